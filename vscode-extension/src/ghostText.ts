// Ghost text that follows the model's refinement steps.
//
// VS Code asks the inline completion provider once and shows what it returns. To let the ghost text
// sharpen while the model denoises, the language client's provider is wrapped (middleware):
// 1. the first call starts the server request with a token of our own, so that VS Code cancelling its
//    call (which happens on every re-trigger) does not stop the denoising loop on the server;
// 2. that call answers as soon as the first refinement (or the final result) is there;
// 3. every later dgem/refinement re-triggers the inline suggestion, and the provider answers at once
//    with the latest refinement text; the final result replaces it when the request completes;
// 4. the server request is cancelled only when the document or the cursor moved on;
// 5. typing the start of the ghost text, or accepting a word or a line of it, keeps the rest on screen
//    without asking the server again.
import * as vscode from "vscode";
import { BaseLanguageClient, Middleware } from "vscode-languageclient";
import { RefinementParams } from "./protocol";
import * as settings from "./settings";
import { StatusBar } from "./statusBar";

/** The language client's own provider, which sends textDocument/inlineCompletion. */
type ProvideInlineCompletionItemsSignature = Parameters<NonNullable<Middleware["provideInlineCompletionItems"]>>[4];

type Items = vscode.InlineCompletionItem[] | vscode.InlineCompletionList | null | undefined;

// Re-triggering on every step would flood the editor with provider calls on a fast GPU; at most one
// re-trigger per interval, always showing the newest text.
const RETRIGGER_INTERVAL_MS = 40;

interface InFlight {
    uri: string;
    version: number;
    position: vscode.Position;
    /** The cursor's line up to the cursor when the request was sent. */
    lineBefore: string;
    tokenSource: vscode.CancellationTokenSource;
    startedAt: number;
    requestId?: number | string;
    latest?: vscode.InlineCompletionItem;
    final?: Items;
    failed?: unknown;
    wake: Array<() => void>;
}

export class GhostText implements vscode.Disposable {
    private inFlight: InFlight | undefined;
    private forceFresh = false;
    private retriggerTimer: NodeJS.Timeout | undefined;
    private suspendedUri: string | undefined;

    constructor(
        private readonly client: () => BaseLanguageClient | undefined,
        private readonly status: StatusBar,
        private readonly log: vscode.LogOutputChannel,
    ) {}

    /** Middleware for the language client's inline completion provider. */
    readonly provide = async (
        document: vscode.TextDocument,
        position: vscode.Position,
        context: vscode.InlineCompletionContext,
        token: vscode.CancellationToken,
        next: ProvideInlineCompletionItemsSignature,
    ): Promise<Items> => {
        if (!settings.isEnabled() || document.uri.toString() === this.suspendedUri) {
            return null;
        }
        const uri = document.uri.toString();
        let request = this.inFlight;
        this.log.debug(`provide v${document.version} ${position.line}:${position.character} ${context.triggerKind}`);
        const sameSpot =
            request !== undefined &&
            request.uri === uri &&
            request.version === document.version &&
            request.position.isEqual(position);
        if (!request || !sameSpot || this.forceFresh) {
            const rest = this.forceFresh ? undefined : this.continuation(document, position);
            this.forceFresh = false;
            if (rest) {
                return [rest];
            }
            request = this.start(document, position, context, next);
        }
        return this.answer(request, token);
    };

    /** Stops showing ghost text in a document (while a rewrite preview is shown there). */
    suspend(uri: string | undefined): void {
        this.suspendedUri = uri;
        if (uri !== undefined) {
            this.cancel();
        }
    }

    /** Asks the server again at the cursor, even when the last answer is for the same spot. */
    async trigger(): Promise<void> {
        this.forceFresh = true;
        await vscode.commands.executeCommand("editor.action.inlineSuggest.trigger");
    }

    /** A dgem/refinement notification: keep the newest text for the request at the cursor and show it. */
    onRefinement(params: RefinementParams): boolean {
        const request = this.inFlight;
        const client = this.client();
        if (!request || !client || params.uri !== request.uri || params.version !== request.version) {
            return false;
        }
        const range = client.protocol2CodeConverter.asRange(params.range);
        // An older request at another spot of the same version may still stream; its range misses the cursor.
        if (!range.contains(request.position)) {
            return false;
        }
        if (request.requestId !== undefined && request.requestId !== params.requestId) {
            const newer =
                typeof params.requestId === "number" &&
                typeof request.requestId === "number" &&
                params.requestId > request.requestId;
            if (!newer) {
                return false;
            }
        }
        request.requestId = params.requestId;
        if (request.final !== undefined) {
            return true;
        }
        request.latest = new vscode.InlineCompletionItem(params.text, range);
        this.log.debug(`refinement ${params.requestId} step ${params.step}: ${JSON.stringify(params.text)}`);
        this.wakeAll(request);
        if (settings.refinementDisplay() === "stream") {
            this.scheduleRetrigger(request);
        }
        return true;
    }

    cancel(): void {
        if (this.inFlight) {
            this.inFlight.tokenSource.cancel();
            this.wakeAll(this.inFlight);
            this.inFlight = undefined;
        }
    }

    /**
     * The rest of the shown infill when the text typed (or partly accepted) since it was asked for is its
     * beginning; it becomes the answer at the new cursor, so that further typing can continue it too.
     */
    private continuation(document: vscode.TextDocument, position: vscode.Position): vscode.InlineCompletionItem | undefined {
        const request = this.inFlight;
        const shown = request?.final ? firstItem(request.final) : undefined;
        if (!request || !shown || request.uri !== document.uri.toString() || !position.isAfter(request.position)) {
            return undefined;
        }
        const line = document.lineAt(request.position.line).text;
        if (line.slice(0, request.position.character) !== request.lineBefore) {
            return undefined;
        }
        const insertText = typeof shown.insertText === "string" ? shown.insertText : shown.insertText.value;
        const starts = shown.range === undefined || shown.range.isEmpty;
        const typed = document.getText(new vscode.Range(request.position, position));
        if (!starts || !typed || !insertText.startsWith(typed) || typed.length >= insertText.length) {
            return undefined;
        }
        const rest = new vscode.InlineCompletionItem(insertText.slice(typed.length), new vscode.Range(position, position));
        this.inFlight = {
            ...request,
            version: document.version,
            position,
            lineBefore: document.lineAt(position.line).text.slice(0, position.character),
            latest: undefined,
            final: [rest],
            wake: [],
        };
        return rest;
    }

    private start(
        document: vscode.TextDocument,
        position: vscode.Position,
        context: vscode.InlineCompletionContext,
        next: ProvideInlineCompletionItemsSignature,
    ): InFlight {
        this.cancel();
        const request: InFlight = {
            uri: document.uri.toString(),
            version: document.version,
            position,
            lineBefore: document.lineAt(position.line).text.slice(0, position.character),
            tokenSource: new vscode.CancellationTokenSource(),
            startedAt: Date.now(),
            wake: [],
        };
        this.inFlight = request;
        this.status.set("busy");
        Promise.resolve(next(document, position, context, request.tokenSource.token)).then(
            (items) => {
                request.final = items ?? [];
                if (this.inFlight === request) {
                    // A superseded request also answers (empty); only the current one sets the status.
                    this.status.finished(Date.now() - request.startedAt);
                }
                this.wakeAll(request);
                if (request.latest !== undefined) {
                    this.scheduleRetrigger(request);
                }
            },
            (error: unknown) => {
                request.failed = error;
                request.final = null;
                if (this.inFlight === request && !request.tokenSource.token.isCancellationRequested) {
                    this.status.set("error", `infill failed: ${String(error)}`);
                }
                this.wakeAll(request);
            },
        );
        return request;
    }

    /** What the provider returns now: the final items, else the newest refinement, else the first of them to arrive. */
    private async answer(request: InFlight, token: vscode.CancellationToken): Promise<Items> {
        const streaming = settings.refinementDisplay() === "stream";
        while (!token.isCancellationRequested && this.inFlight === request) {
            if (request.final !== undefined) {
                this.log.debug("answer: final");
                return request.final;
            }
            if (streaming && request.latest !== undefined) {
                this.log.debug(`answer: ${JSON.stringify(request.latest.insertText)}`);
                return [request.latest];
            }
            let onCancel: vscode.Disposable | undefined;
            await new Promise<void>((resolve) => {
                request.wake.push(resolve);
                onCancel = token.onCancellationRequested(() => resolve());
            });
            onCancel?.dispose();
        }
        return null;
    }

    private wakeAll(request: InFlight): void {
        const waiting = request.wake.splice(0);
        for (const resolve of waiting) {
            resolve();
        }
    }

    private scheduleRetrigger(request: InFlight): void {
        if (this.retriggerTimer !== undefined) {
            return;
        }
        this.retriggerTimer = setTimeout(() => {
            this.retriggerTimer = undefined;
            const editor = vscode.window.activeTextEditor;
            const stillHere =
                this.inFlight === request &&
                editor !== undefined &&
                editor.document.uri.toString() === request.uri &&
                editor.document.version === request.version &&
                editor.selection.active.isEqual(request.position);
            this.log.debug(`re-trigger (still at the request: ${stillHere})`);
            if (stillHere) {
                void this.redraw();
            }
        }, RETRIGGER_INTERVAL_MS);
    }

    /**
     * Makes VS Code ask the provider again at the same spot. A plain trigger is ignored there: VS Code
     * treats its last request at the same document version and position as still good. Hiding first
     * drops that request; the provider then answers at once from what this class holds.
     */
    private async redraw(): Promise<void> {
        await vscode.commands.executeCommand("editor.action.inlineSuggest.hide");
        await vscode.commands.executeCommand("editor.action.inlineSuggest.trigger");
    }

    dispose(): void {
        this.cancel();
        if (this.retriggerTimer !== undefined) {
            clearTimeout(this.retriggerTimer);
        }
    }
}

function firstItem(items: Items): vscode.InlineCompletionItem | undefined {
    if (!items) {
        return undefined;
    }
    return Array.isArray(items) ? items[0] : items.items[0];
}
