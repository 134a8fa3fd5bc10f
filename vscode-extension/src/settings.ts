// Reads the extension's settings and turns them into what the server and the client need.
import * as fs from "fs";
import * as path from "path";
import * as vscode from "vscode";

export const SECTION = "dgemInfill";

export type RefinementDisplay = "stream" | "final";

/** The settings the server understands (initializationOptions and didChangeConfiguration). */
export interface ServerSettings {
    model: string | null;
    device: string;
    max_tokens: number;
    steps: number | null;
    length: string;
    languages: string[];
}

export interface ServerLaunch {
    command: string;
    args: string[];
}

function config(): vscode.WorkspaceConfiguration {
    return vscode.workspace.getConfiguration(SECTION);
}

export function isEnabled(): boolean {
    return config().get<boolean>("enabled", true);
}

export function refinementDisplay(): RefinementDisplay {
    return config().get<RefinementDisplay>("refinements", "stream");
}

export function languages(): string[] {
    return config().get<string[]>("languages", []);
}

export function serverSettings(): ServerSettings {
    const c = config();
    const model = c.get<string>("model", "").trim();
    const steps = c.get<number>("steps", 0);
    // null is the server's "use the default" (the shipped model; the model's own step count).
    return {
        model: model || null,
        device: c.get<string>("device", "auto"),
        max_tokens: c.get<number>("maxTokens", 64),
        steps: steps > 0 ? steps : null,
        length: c.get<string>("length", "auto"),
        languages: languages(),
    };
}

/** Settings whose change needs a new server process rather than a didChangeConfiguration. */
export function needsRestart(event: vscode.ConfigurationChangeEvent): boolean {
    return ["server", "languages", "trace"].some((key) => event.affectsConfiguration(`${SECTION}.${key}`));
}

// Runs the server's entry point through an interpreter, so a virtual environment works without activation.
const PYTHON_ENTRY = "import sys; from lsp.main import main; sys.exit(main())";

/** Finds the server to start, or says what is missing and how to fix it. */
export function resolveServer(): ServerLaunch | { error: string } {
    const c = config();
    const pythonPath = c.get<string>("server.pythonPath", "").trim();
    if (pythonPath) {
        const python = findExecutable(pythonPath);
        if (!python) {
            return {
                error:
                    `the Python interpreter "${pythonPath}" (setting dgemInfill.server.pythonPath) does not exist. ` +
                    "Point the setting at an interpreter where `pip install dgem-infill` was run, or clear it to use dgemInfill.server.command.",
            };
        }
        return { command: python, args: ["-c", PYTHON_ENTRY, "--stdio"] };
    }
    const command = c.get<string>("server.command", "dgem-infill").trim() || "dgem-infill";
    const found = findExecutable(command) ?? workspaceVenvServer(command);
    if (!found) {
        return {
            error:
                `the server "${command}" was not found on PATH. Install it with \`pip install dgem-infill\`, ` +
                "then set dgemInfill.server.command to the full path of its `dgem-infill` executable, " +
                "or dgemInfill.server.pythonPath to the Python interpreter it was installed into.",
        };
    }
    return { command: found, args: ["--stdio"] };
}

function isExecutableFile(file: string): boolean {
    try {
        fs.accessSync(file, fs.constants.X_OK);
        return fs.statSync(file).isFile();
    } catch {
        return false;
    }
}

function expandHome(file: string): string {
    const home = process.env.HOME ?? "";
    return file.startsWith("~/") && home ? path.join(home, file.slice(2)) : file;
}

/** An executable named by path, or looked up on PATH like a shell would. */
export function findExecutable(name: string): string | undefined {
    const expanded = expandHome(name);
    if (expanded.includes("/") || expanded.includes("\\")) {
        return isExecutableFile(expanded) ? path.resolve(expanded) : undefined;
    }
    const suffixes = process.platform === "win32" ? ["", ".exe", ".cmd"] : [""];
    for (const dir of (process.env.PATH ?? "").split(path.delimiter)) {
        for (const suffix of suffixes) {
            const candidate = path.join(dir, expanded + suffix);
            if (dir && isExecutableFile(candidate)) {
                return candidate;
            }
        }
    }
    return undefined;
}

/** A project checkout of dgem-infill keeps its server in .venv/; use it when the default command is not on PATH. */
function workspaceVenvServer(command: string): string | undefined {
    if (command !== "dgem-infill") {
        return undefined;
    }
    for (const folder of vscode.workspace.workspaceFolders ?? []) {
        const candidate = path.join(folder.uri.fsPath, ".venv", "bin", "dgem-infill");
        if (isExecutableFile(candidate)) {
            return candidate;
        }
    }
    return undefined;
}
