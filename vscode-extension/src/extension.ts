// Entry point: starts the dgem-infill language server and wires ghost text, rewrites, commands and
// the status bar to it. The language client turns the server's inlineCompletionProvider into VS Code's
// own ghost text; everything here only adds streaming and the product's commands on top.
import * as vscode from "vscode";
import {
    CloseAction,
    ErrorAction,
    LanguageClient,
    LanguageClientOptions,
    ServerOptions,
    State,
} from "vscode-languageclient/node";
import { GhostText } from "./ghostText";
import { LoadingProgress } from "./progress";
import { LspRange, REFINEMENT_NOTIFICATION, REWRITE_COMMAND, RefinementParams } from "./protocol";
import { Rewriter } from "./rewrite";
import * as settings from "./settings";
import { StatusBar } from "./statusBar";

let client: LanguageClient | undefined;
let output: vscode.LogOutputChannel;
let status: StatusBar;
let ghost: GhostText;
let rewriter: Rewriter;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
    output = vscode.window.createOutputChannel("dgem-infill", { log: true });
    status = new StatusBar();
    ghost = new GhostText(() => client, status, output);
    rewriter = new Rewriter(() => client, status, (uri) => ghost.suspend(uri));
    context.subscriptions.push(output, status, ghost, rewriter);

    const command = (name: string, run: () => unknown): void => {
        context.subscriptions.push(vscode.commands.registerCommand(name, run));
    };
    command("dgemInfill.trigger", () => ghost.trigger());
    command("dgemInfill.acceptWord", () => vscode.commands.executeCommand("editor.action.inlineSuggest.acceptNextWord"));
    command("dgemInfill.acceptLine", () => vscode.commands.executeCommand("editor.action.inlineSuggest.acceptNextLine"));
    command("dgemInfill.rewriteSelection", () => {
        const editor = vscode.window.activeTextEditor;
        return editor ? rewriter.start(editor) : undefined;
    });
    command("dgemInfill.acceptRewrite", () => rewriter.accept());
    command("dgemInfill.rejectRewrite", () => rewriter.reject());
    command("dgemInfill.toggle", toggle);
    command("dgemInfill.showOutput", () => output.show(true));
    command("dgemInfill.restartServer", restart);

    context.subscriptions.push(
        vscode.workspace.onDidChangeConfiguration(async (event) => {
            if (!event.affectsConfiguration(settings.SECTION)) {
                return;
            }
            status.setEnabled(settings.isEnabled());
            await vscode.commands.executeCommand("setContext", "dgemInfill.enabled", settings.isEnabled());
            if (settings.needsRestart(event)) {
                await restart();
            } else if (client?.isRunning()) {
                await client.sendNotification("workspace/didChangeConfiguration", { settings: settings.serverSettings() });
            }
        }),
        vscode.window.onDidChangeActiveTextEditor(() => {
            if (rewriter.pending) {
                void rewriter.reject();
            }
        }),
    );
    status.setEnabled(settings.isEnabled());
    await vscode.commands.executeCommand("setContext", "dgemInfill.enabled", settings.isEnabled());
    await startClient();
}

export async function deactivate(): Promise<void> {
    await stopClient();
}

async function toggle(): Promise<void> {
    const enabled = !settings.isEnabled();
    await vscode.workspace.getConfiguration(settings.SECTION).update("enabled", enabled, vscode.ConfigurationTarget.Global);
    if (!enabled) {
        ghost.cancel();
        await vscode.commands.executeCommand("editor.action.inlineSuggest.hide");
    }
    void vscode.window.setStatusBarMessage(`dgem-infill ${enabled ? "on" : "off"}`, 2000);
}

async function restart(): Promise<void> {
    await stopClient();
    await startClient();
}

async function stopClient(): Promise<void> {
    rewriter?.clear();
    ghost?.cancel();
    const running = client;
    client = undefined;
    if (running) {
        await running.stop().catch(() => undefined);
        await running.dispose().catch(() => undefined);
    }
}

async function startClient(): Promise<void> {
    const launch = settings.resolveServer();
    if ("error" in launch) {
        reportMissingServer(launch.error);
        return;
    }
    output.appendLine(`starting ${launch.command} ${launch.args.join(" ")}`);
    status.restarted(`${launch.command} ${launch.args.join(" ")}`);
    const serverOptions: ServerOptions = { command: launch.command, args: launch.args };
    // Assigned below; the middleware closes over it.
    let created: LanguageClient;
    const clientOptions: LanguageClientOptions = {
        documentSelector: settings.languages().flatMap((language) => [
            { scheme: "file", language },
            { scheme: "untitled", language },
        ]),
        initializationOptions: settings.serverSettings(),
        outputChannel: output,
        traceOutputChannel: output,
        middleware: {
            provideInlineCompletionItems: ghost.provide,
            // The server's "Rewrite selection" code action runs dgem.rewrite; give it the streamed preview.
            executeCommand: (name, args, next) => {
                const target = args[0] as { uri?: string; range?: LspRange } | undefined;
                const editor = vscode.window.activeTextEditor;
                if (name === REWRITE_COMMAND && target?.range && editor && editor.document.uri.toString() === target.uri) {
                    return rewriter.start(editor, created.protocol2CodeConverter.asRange(target.range));
                }
                return next(name, args);
            },
        },
        initializationFailedHandler: (error) => {
            status.set("error", `the server failed to initialize: ${String(error)}`);
            return false;
        },
        errorHandler: {
            error: () => ({ action: ErrorAction.Continue }),
            closed: () => {
                status.set("error", "the server stopped; run 'dgem-infill: Restart the server' after fixing the log's error");
                return { action: CloseAction.DoNotRestart };
            },
        },
    };
    created = new LanguageClient("dgemInfill", "dgem-infill", serverOptions, clientOptions);
    client = created;
    created.onNotification(REFINEMENT_NOTIFICATION, (params: RefinementParams) => {
        if (!rewriter.onRefinement(params)) {
            ghost.onRefinement(params);
        }
    });
    created.registerFeature(new LoadingProgress(created, status));
    created.onDidChangeState(({ newState }) => {
        if (newState === State.Running && status.current === "starting") {
            status.set("ready");
        }
    });
    try {
        await created.start();
    } catch (error) {
        status.set("error", String(error));
        output.appendLine(`could not start the server: ${String(error)}`);
        void vscode.window
            .showErrorMessage(`dgem-infill: could not start the server (${String(error)}).`, "Show Log", "Open Settings")
            .then(openFix);
    }
}

function reportMissingServer(message: string): void {
    output.appendLine(`not starting: ${message}`);
    status.set("error", message);
    void vscode.window.showErrorMessage(`dgem-infill: ${message}`, "Open Settings", "Show Log").then(openFix);
}

function openFix(choice: string | undefined): void {
    if (choice === "Open Settings") {
        void vscode.commands.executeCommand("workbench.action.openSettings", "dgemInfill.server");
    } else if (choice === "Show Log") {
        output.show(true);
    }
}
