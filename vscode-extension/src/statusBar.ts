// One status bar item: model state (starting, loading, ready, busy, error, off) and the last latency.
import * as vscode from "vscode";

export type ServerState = "starting" | "loading" | "ready" | "busy" | "error" | "off";

const ICONS: Record<ServerState, string> = {
    starting: "$(sync~spin)",
    loading: "$(sync~spin)",
    ready: "$(sparkle)",
    busy: "$(loading~spin)",
    error: "$(error)",
    off: "$(circle-slash)",
};

export class StatusBar implements vscode.Disposable {
    private readonly item = vscode.window.createStatusBarItem("dgemInfill.status", vscode.StatusBarAlignment.Right, 100);
    private state: ServerState = "starting";
    private detail = "";
    private lastLatencyMs: number | undefined;
    private enabled = true;

    constructor() {
        this.item.name = "dgem-infill";
        this.render();
        this.item.show();
    }

    get current(): ServerState {
        return this.enabled ? this.state : "off";
    }

    set(state: ServerState, detail = ""): void {
        this.state = state;
        this.detail = detail;
        this.render();
    }

    /** A new server: forget the last one's latency. */
    restarted(detail: string): void {
        this.lastLatencyMs = undefined;
        this.set("starting", detail);
    }

    /** A request finished: back to ready, showing how long it took. */
    finished(latencyMs: number): void {
        this.lastLatencyMs = Math.round(latencyMs);
        this.set("ready");
    }

    setEnabled(enabled: boolean): void {
        this.enabled = enabled;
        this.render();
    }

    private render(): void {
        const state = this.current;
        const latency = this.lastLatencyMs === undefined ? "" : ` ${this.lastLatencyMs} ms`;
        const label = state === "ready" ? `dgem${latency}` : `dgem: ${state}`;
        this.item.text = `${ICONS[state]} ${label}`;
        const lines = [`dgem-infill: ${state}`];
        if (this.detail) {
            lines.push(this.detail);
        }
        if (this.lastLatencyMs !== undefined) {
            lines.push(`last infill: ${this.lastLatencyMs} ms`);
        }
        lines.push(state === "error" ? "Click to show the server log." : "Click to turn infill on or off.");
        this.item.tooltip = lines.join("\n");
        this.item.command = state === "error" ? "dgemInfill.showOutput" : "dgemInfill.toggle";
        this.item.backgroundColor =
            state === "error" ? new vscode.ThemeColor("statusBarItem.errorBackground") : undefined;
    }

    dispose(): void {
        this.item.dispose();
    }
}
