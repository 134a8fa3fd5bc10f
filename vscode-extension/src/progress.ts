// Model loading, reported by the server with $/progress, shown in the status bar.
//
// The language client's own progress feature answers window/workDoneProgress/create with a spinner of
// its own. Features are initialized in the order they were registered, so this one, registered after
// the built-in ones, installs the handler that wins; it also keeps VS Code's spinner.
import * as vscode from "vscode";
import {
    BaseLanguageClient,
    ClientCapabilities,
    FeatureState,
    StaticFeature,
    WorkDoneProgress,
    WorkDoneProgressCreateRequest,
} from "vscode-languageclient";
import { StatusBar } from "./statusBar";

export class LoadingProgress implements StaticFeature {
    constructor(
        private readonly client: BaseLanguageClient,
        private readonly status: StatusBar,
    ) {}

    fillClientCapabilities(capabilities: ClientCapabilities): void {
        capabilities.window = { ...capabilities.window, workDoneProgress: true };
    }

    initialize(): void {
        this.client.onRequest(WorkDoneProgressCreateRequest.type, ({ token }) => this.follow(token));
    }

    private follow(token: string | number): void {
        let finish: (() => void) | undefined;
        let report: ((message: string, increment?: number) => void) | undefined;
        let last = 0;
        const subscription = this.client.onProgress(WorkDoneProgress.type, token, (value) => {
            if (value.kind === "begin") {
                void vscode.window.withProgress(
                    { location: vscode.ProgressLocation.Window, title: value.title },
                    (progress) =>
                        new Promise<void>((resolve) => {
                            finish = resolve;
                            report = (message, increment) => progress.report({ message, increment });
                        }),
                );
            }
            if (value.kind === "end") {
                this.status.set("ready", value.message ?? "");
                finish?.();
                subscription.dispose();
                return;
            }
            const percent = value.percentage ?? last;
            report?.(value.message ?? "", percent - last);
            last = percent;
            const title = value.kind === "begin" ? value.title : "";
            this.status.set("loading", `${[title, value.message ?? ""].filter(Boolean).join(": ")} ${percent}%`);
        });
    }

    getState(): FeatureState {
        return { kind: "static" };
    }

    clear(): void {}
}
