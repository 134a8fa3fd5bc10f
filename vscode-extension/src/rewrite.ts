// Rewrite of a selection: the server regenerates the selected code, streaming each refinement; the
// preview shows the old text struck through with the new text beside it until the user accepts (Tab)
// or rejects (Esc). Accepting asks the server, which applies the edit with workspace/applyEdit.
import * as vscode from "vscode";
import { BaseLanguageClient, ExecuteCommandRequest } from "vscode-languageclient";
import { ACCEPT_REWRITE_COMMAND, REJECT_REWRITE_COMMAND, REWRITE_COMMAND, RefinementParams } from "./protocol";
import { StatusBar } from "./statusBar";

const PENDING_CONTEXT = "dgemInfill.rewritePending";
// Accepting before the last step waits this long for the server to finish.
const ACCEPT_WAIT_MS = 60_000;

/** What dgem.rewrite answers once the rewrite has finished streaming. */
interface RewriteAnswer {
    rewriteId: number | string;
    text: string;
}

interface Session {
    editor: vscode.TextEditor;
    uri: string;
    range: vscode.Range;
    startedAt: number;
    text: string;
    done: boolean;
    requestId?: number | string;
    /** The rewriteId from dgem.rewrite's answer (the request's id); undefined when it failed. */
    id: Promise<number | string | undefined>;
    doneWaiters: Array<() => void>;
}

export class Rewriter implements vscode.Disposable {
    private session: Session | undefined;
    private readonly removed = vscode.window.createTextEditorDecorationType({
        textDecoration: "line-through",
        opacity: "0.55",
        backgroundColor: new vscode.ThemeColor("diffEditor.removedTextBackground"),
    });
    // Decorations at one position are drawn newest first: the hint is created first so it ends the line.
    private readonly hint = vscode.window.createTextEditorDecorationType({
        after: { color: new vscode.ThemeColor("editorCodeLens.foreground"), margin: "0 0 0 2ch" },
    });
    private readonly added = vscode.window.createTextEditorDecorationType({
        after: {
            color: new vscode.ThemeColor("editorGhostText.foreground"),
            backgroundColor: new vscode.ThemeColor("diffEditor.insertedTextBackground"),
            margin: "0 0 0 1ch",
        },
    });

    constructor(
        private readonly client: () => BaseLanguageClient | undefined,
        private readonly status: StatusBar,
        private readonly onActiveChange: (uri: string | undefined) => void,
    ) {}

    get pending(): boolean {
        return this.session !== undefined;
    }

    /** Rewrites `range` (default: the selection, or the cursor's line when nothing is selected). */
    async start(editor: vscode.TextEditor, range?: vscode.Range): Promise<void> {
        const client = this.client();
        if (!client) {
            void vscode.window.showWarningMessage("dgem-infill: the server is not running.");
            return;
        }
        if (this.session) {
            await this.reject();
        }
        const selection = editor.selection;
        range ??= selection.isEmpty ? editor.document.lineAt(selection.active.line).range : selection;
        const uri = editor.document.uri.toString();
        this.onActiveChange(uri);
        const session: Session = {
            editor,
            uri,
            range,
            startedAt: Date.now(),
            text: "",
            done: false,
            id: Promise.resolve(undefined),
            doneWaiters: [],
        };
        session.id = client
            .sendRequest(ExecuteCommandRequest.type, {
                command: REWRITE_COMMAND,
                arguments: [{ uri, range: client.code2ProtocolConverter.asRange(range) }],
            })
            .then(
                (answer: RewriteAnswer | null) => {
                    if (this.session === session) {
                        this.status.finished(Date.now() - session.startedAt);
                        if (answer) {
                            // The answer carries the final text too: show it even if a notification was missed.
                            session.text = answer.text;
                            session.done = true;
                            session.doneWaiters.splice(0).forEach((resolve) => resolve());
                            this.render();
                        }
                    }
                    return answer?.rewriteId;
                },
                (error: unknown) => {
                    if (this.session === session) {
                        this.clear();
                        this.status.set("error", `rewrite failed: ${String(error)}`);
                        void vscode.window.showErrorMessage(`dgem-infill: rewrite failed: ${String(error)}`);
                    }
                    return undefined;
                },
            );
        this.session = session;
        this.status.set("busy");
        await vscode.commands.executeCommand("setContext", PENDING_CONTEXT, true);
        this.render();
    }

    /** A dgem/refinement notification; true when it belonged to the rewrite. */
    onRefinement(params: RefinementParams): boolean {
        const session = this.session;
        if (!session || params.uri !== session.uri) {
            return false;
        }
        if (session.requestId !== undefined && params.requestId !== session.requestId) {
            return false;
        }
        // The rewrite's refinements cover the selection; a late one of an inline completion starts elsewhere.
        const client = this.client();
        if (session.requestId === undefined && client && !client.protocol2CodeConverter.asRange(params.range).start.isEqual(session.range.start)) {
            return false;
        }
        session.requestId = params.requestId;
        session.text = params.text;
        session.done = params.done;
        if (params.done) {
            session.doneWaiters.splice(0).forEach((resolve) => resolve());
        }
        this.render();
        return true;
    }

    async accept(): Promise<void> {
        const session = this.session;
        const client = this.client();
        if (!session || !client) {
            return;
        }
        await this.waitUntilDone(session);
        const id = await session.id;
        this.clear();
        if (id === undefined || id === null) {
            return;
        }
        const answer = (await client.sendRequest(ExecuteCommandRequest.type, {
            command: ACCEPT_REWRITE_COMMAND,
            arguments: [id],
        })) as { applied?: boolean; reason?: string } | null;
        if (answer && answer.applied === false) {
            void vscode.window.showWarningMessage(`dgem-infill: the rewrite was not applied: ${answer.reason ?? "unknown reason"}`);
        }
    }

    async reject(): Promise<void> {
        const session = this.session;
        const client = this.client();
        if (!session) {
            return;
        }
        this.clear();
        // Still streaming: the rewriteId is the request's id, known from its refinements; rejecting stops it.
        const id = session.done ? await session.id : session.requestId;
        if (client && id !== undefined && id !== null) {
            await client.sendRequest(ExecuteCommandRequest.type, { command: REJECT_REWRITE_COMMAND, arguments: [id] });
        }
    }

    /** Drops the preview without telling the server (the server stopped, or the rewrite failed). */
    clear(): void {
        const session = this.session;
        this.session = undefined;
        this.onActiveChange(undefined);
        void vscode.commands.executeCommand("setContext", PENDING_CONTEXT, false);
        if (session) {
            session.doneWaiters.splice(0).forEach((resolve) => resolve());
            for (const type of [this.removed, this.added, this.hint]) {
                session.editor.setDecorations(type, []);
            }
        }
    }

    private waitUntilDone(session: Session): Promise<void> {
        if (session.done) {
            return Promise.resolve();
        }
        return new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, ACCEPT_WAIT_MS);
            session.doneWaiters.push(() => {
                clearTimeout(timer);
                resolve();
            });
        });
    }

    /** Old lines struck through; each followed by its new line; surplus new lines joined on the last one. */
    private render(): void {
        const session = this.session;
        if (!session) {
            return;
        }
        const { editor, range } = session;
        const newLines = session.text.split("\n");
        const oldLineCount = range.end.line - range.start.line + 1;
        const added: vscode.DecorationOptions[] = [];
        for (let i = 0; i < oldLineCount; i++) {
            const line = range.start.line + i;
            const last = i === oldLineCount - 1;
            const pieces = last ? newLines.slice(i) : newLines.slice(i, i + 1);
            if (pieces.length === 0) {
                continue;
            }
            const end = last ? range.end : editor.document.lineAt(line).range.end;
            added.push({
                range: new vscode.Range(end, end),
                renderOptions: { after: { contentText: `→ ${pieces.join(" ⏎ ")}`.replace(/ /g, "\u00a0") } },
            });
        }
        const state = session.done ? "Tab accept · Esc reject" : "rewriting…";
        editor.setDecorations(this.removed, [range]);
        editor.setDecorations(this.added, added);
        editor.setDecorations(this.hint, [
            { range: new vscode.Range(range.end, range.end), renderOptions: { after: { contentText: state } } },
        ]);
    }

    dispose(): void {
        this.clear();
        this.removed.dispose();
        this.added.dispose();
        this.hint.dispose();
    }
}
