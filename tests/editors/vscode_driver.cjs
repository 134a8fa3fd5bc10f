// Drives code-server (real VS Code in the browser) with playwright-core in Debian's Chromium, the way a
// user would: open a Python file, type, wait for ghost text, accept it with Tab, save; then select a line,
// rewrite it (Alt+R), wait for the streamed preview, accept it with Tab, save.
//
// Then it switches to a scripted server (scripted_server.py: fixed refinements, slowly) to check that every
// refinement is drawn and that accepting a word keeps the rest. Last, it points the server setting at a
// command that does not exist and reads the error VS Code shows.
//
//   node vscode_driver.cjs URL FILE ARTIFACTS_DIR SCRIPTED_SERVER   (env CHROMIUM: the browser executable)
//
// Prints one JSON object (what was seen on screen) as its last line; the pytest side checks the files.
"use strict";
const fs = require("fs");
const path = require("path");
const { chromium } = require("playwright-core");

const [url, file, artifacts, scriptedServer] = process.argv.slice(2);
const fileName = path.basename(file);
const SERVER_READY_MS = 180_000; // the extension starts the server; the server imports torch, loads the model
const INFILL_MS = 60_000;
const result = { steps: [] };

function step(name) {
    result.steps.push({ name, at: Date.now() });
    console.error(`[vscode-driver] ${name}`);
}

/** Text of the status bar item of the extension ("dgem: loading", "dgem 42 ms", ...). */
async function statusText(page) {
    return page.evaluate(() => {
        const items = [...document.querySelectorAll(".statusbar-item")];
        // "dgem: busy", "dgem 42 ms" (not a passing "dgem-infill off" status message)
        const ours = items.find((item) => /^\S*\s*dgem(:| |$)/.test((item.textContent ?? "").trim()));
        return ours ? (ours.textContent ?? "").trim() : "";
    });
}

/**
 * Ghost text in the editor, line by line. VS Code splits it into many spans (one per token colour, one
 * block per extra line) and writes U+00A0 for spaces.
 */
function readGhostText() {
    const lines = new Map();
    const leaves = [...document.querySelectorAll('.monaco-editor [class*="ghost-text"]')].filter(
        (el) => !el.querySelector('[class*="ghost-text"]'),
    );
    for (const el of leaves) {
        const line = el.closest(".view-line") ?? el.parentElement;
        lines.set(line, (lines.get(line) ?? "") + (el.textContent ?? "").replace(/\u00a0/g, " "));
    }
    return [...lines.values()].join("\n");
}

async function ghostText(page) {
    return page.evaluate(readGhostText);
}

/** The text of ::after decorations in the editor (the rewrite preview and its hint). */
async function afterDecorations(page) {
    return page.evaluate(() => {
        const texts = [];
        for (const el of document.querySelectorAll(".monaco-editor .view-lines span")) {
            const content = getComputedStyle(el, "::after").content;
            if (content && content !== "none" && content !== "normal") {
                texts.push(JSON.parse(content.replace(/^'|'$/g, '"')).replace(/\u00a0/g, " "));
            }
        }
        return texts;
    });
}

/** Records every distinct ghost text the editor draws (a MutationObserver: no polling gaps). */
async function recordGhostSeries(page) {
    await page.evaluate(`(() => {
        const readGhostText = ${readGhostText.toString()};
        const seen = [];
        window.__dgemGhostSeries = seen;
        new MutationObserver(() => {
            const text = readGhostText();
            if (text.trim() && seen[seen.length - 1] !== text) {
                seen.push(text);
            }
        }).observe(document.body, { subtree: true, childList: true, characterData: true });
    })()`);
}

/** Records every distinct text of the extension's status bar item, from VS Code's start on. */
async function recordStatusSeries(page) {
    await page.evaluate(() => {
        const seen = [];
        window.__dgemStatusSeries = seen;
        new MutationObserver(() => {
            for (const item of document.querySelectorAll(".statusbar-item")) {
                const text = (item.textContent ?? "").trim();
                if (/^\S*\s*dgem(:| |$)/.test(text) && seen[seen.length - 1] !== text) {
                    seen.push(text);
                }
            }
        }).observe(document.body, { subtree: true, childList: true, characterData: true });
    });
}

async function waitFor(what, timeoutMs, check) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
        const value = await check();
        if (value) {
            return value;
        }
        if (Date.now() > deadline) {
            throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 100));
    }
}

/** Ghost text once the infill has finished streaming and the last re-trigger has drawn it. */
async function finishedGhost(page) {
    let previous = null;
    return waitFor("ghost text from a finished infill", INFILL_MS, async () => {
        const [ghost, status] = [await ghostText(page), await statusText(page)];
        const finished = /dgem \d+ ms/.test(status) && ghost.trim() !== "";
        const stable = finished && ghost === previous;
        previous = finished ? ghost : null;
        return stable ? ghost : null;
    });
}

/** Waits until the status bar has shown the same latency for a second: no request in flight. */
async function quiet(page) {
    let last = null;
    let since = 0;
    return waitFor("no request in flight", INFILL_MS, async () => {
        const status = await statusText(page);
        if (status !== last || !/dgem \d+ ms/.test(status)) {
            [last, since] = [status, Date.now()];
            return null;
        }
        return Date.now() - since > 1000 ? status : null;
    });
}

/** Ctrl+S, then the file on disk: VS Code's own "saved" signal is not exposed to the page. */
async function save(page, what) {
    const before = fs.readFileSync(file, "utf8");
    await page.keyboard.press("Control+S");
    await waitFor(`${what} to be saved`, 10_000, () => fs.readFileSync(file, "utf8") !== before);
}

/** Changes a user setting through VS Code's Settings editor, as a user would. */
async function setSetting(page, id, value) {
    await page.keyboard.press("Control+Comma");
    const search = page.locator(".settings-editor .suggest-input-container");
    await search.waitFor({ state: "visible" });
    await search.click();
    await page.keyboard.press("Control+A");
    await page.keyboard.type(id);
    const field = page
        .locator(".settings-editor .settings-body .setting-item-text")
        .first()
        .locator("input, textarea")
        .first();
    await field.waitFor({ state: "visible", timeout: 10_000 });
    const before = await statusText(page);
    await field.fill(value);
    // VS Code writes the setting after a short pause; the extension then restarts the server.
    await waitFor(`the extension to see ${id} change`, 10_000, async () => (await statusText(page)) !== before);
}

/** Back to the editor of FILE (closes the Settings editor). */
async function backToFile(page) {
    await page.keyboard.press("Control+W");
    await page.waitForSelector(".monaco-editor .view-lines:has-text('def shout')");
    await page.click(".monaco-editor .view-lines");
}

async function main() {
    const browser = await chromium.launch({
        executablePath: process.env.CHROMIUM,
        headless: true,
        args: [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ],
    });
    const page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
    try {
        step("open VS Code");
        await page.goto(url);
        await page.waitForSelector(".monaco-workbench", { timeout: 60_000 });
        await recordStatusSeries(page);
        result.serverStatusAtStart = await waitFor("the extension's status bar item", 60_000, () => statusText(page));

        step(`open ${fileName}`);
        await page.keyboard.press("Control+P");
        await page.waitForSelector(".quick-input-widget input", { state: "visible" });
        await page.keyboard.type(fileName);
        await page.waitForSelector(`.quick-input-list .monaco-list-row[aria-label*="${fileName}"]`);
        await page.keyboard.press("Enter");
        await page.waitForSelector(".monaco-editor .view-lines:has-text('def shout')");
        await page.click(".monaco-editor .view-lines");

        step("wait for the model to load");
        result.readyStatus = await waitFor("the server to be ready", SERVER_READY_MS, async () => {
            const status = await statusText(page);
            if (/error/.test(status)) {
                throw new Error(`the extension reports an error: ${status}`);
            }
            return /^\S*\s*dgem( \d+ ms)?$/.test(status) ? status : null;
        });

        step("type at the end of the file");
        await recordGhostSeries(page);
        await page.keyboard.press("Control+End");
        result.typed = "    return text.up";
        await page.keyboard.type(result.typed, { delay: 30 });
        result.ghost = await finishedGhost(page);
        result.ghostSeries = await page.evaluate(() => window.__dgemGhostSeries);
        result.statusAfterInfill = await statusText(page);
        result.statusSeries = await page.evaluate(() => window.__dgemStatusSeries);
        await page.screenshot({ path: path.join(artifacts, "vscode-ghost-text.png") });

        step("accept with Tab and save");
        await page.keyboard.press("Tab");
        await waitFor("the ghost text to be accepted", 10_000, async () => (await ghostText(page)).trim() === "");
        await save(page, "the accepted infill");

        step("select line 2 and rewrite it");
        await page.keyboard.press("Control+G");
        await page.keyboard.type("2");
        await page.keyboard.press("Enter");
        await page.keyboard.press("Home");
        await page.keyboard.press("Shift+End");
        await page.keyboard.press("Alt+R");
        const preview = await waitFor("the finished rewrite preview", INFILL_MS, async () => {
            const texts = await afterDecorations(page);
            return texts.some((text) => text.includes("Tab accept")) ? texts : null;
        });
        result.rewritePreview = preview.filter((text) => text.startsWith("→ ")).map((text) => text.slice(2));
        await page.screenshot({ path: path.join(artifacts, "vscode-rewrite.png") });

        step("accept the rewrite with Tab and save");
        await page.keyboard.press("Tab");
        await waitFor("the preview to close", 30_000, async () => (await afterDecorations(page)).length === 0);
        await save(page, "the accepted rewrite");

        step("on a new blank line, ask with Alt+\\ and show the next alternative with Alt+]");
        await page.keyboard.press("Control+End");
        await page.keyboard.press("Enter");
        await quiet(page); // the Automatic request that Enter started has answered (one suggestion)
        await page.keyboard.press("Escape"); // a suggestion on screen would be kept by the trigger
        const mark = await page.evaluate(() => window.__dgemStatusSeries.length);
        await page.keyboard.press("Alt+Backslash");
        await waitFor("the invoked request to answer", INFILL_MS, async () => {
            const series = await page.evaluate((from) => window.__dgemStatusSeries.slice(from), mark);
            const busy = series.findIndex((status) => status.includes("busy"));
            return busy >= 0 && series.slice(busy + 1).some((status) => /dgem \d+ ms/.test(status));
        });
        result.blankFirst = await finishedGhost(page);
        await page.keyboard.press("Alt+BracketRight");
        result.blankNext = await waitFor("the next alternative", 10_000, async () => {
            const ghost = await ghostText(page);
            return ghost.trim() !== "" && ghost !== result.blankFirst ? ghost : null;
        });
        await page.keyboard.press("Escape");

        step("switch to the scripted server");
        await setSetting(page, "dgemInfill.server.command", scriptedServer);
        await backToFile(page);
        // A restarted server has no latency yet: plain "dgem" means the new one is up.
        await waitFor("the scripted server to start", SERVER_READY_MS, async () =>
            /^\S*\s*dgem$/.test(await statusText(page)),
        );

        step("type, watch every refinement, accept one word with Ctrl+Right");
        await page.keyboard.press("Control+End");
        await page.keyboard.press("Enter");
        await recordGhostSeries(page);
        result.typedForWord = "total = "; // VS Code indents the new line itself
        await page.keyboard.type(result.typedForWord, { delay: 30 });
        result.ghostBeforeWord = await finishedGhost(page);
        result.scriptedSeries = await page.evaluate(() => window.__dgemGhostSeries);
        await page.keyboard.press("Control+ArrowRight");
        let previous = null;
        result.ghostAfterWord = await waitFor("the rest of the ghost text to settle", 10_000, async () => {
            const ghost = await ghostText(page);
            const settled = ghost !== result.ghostBeforeWord && ghost === previous;
            previous = ghost;
            return settled ? { ghost } : null;
        });
        await page.screenshot({ path: path.join(artifacts, "vscode-accept-word.png") });
        await page.keyboard.press("Escape");
        await save(page, "the accepted word");

        step("toggle off with Alt+Shift+\\, type, toggle on, trigger with Alt+\\");
        await page.keyboard.press("Control+End");
        await page.keyboard.press("Enter");
        await page.keyboard.press("Alt+Shift+Backslash");
        result.statusWhenOff = await waitFor("the status to show off", 10_000, async () => {
            const status = await statusText(page);
            return /off/.test(status) ? status : null;
        });
        await page.keyboard.type("x = ", { delay: 30 });
        // Nothing to wait for when nothing should happen: give the scripted server (first frame at once) a second.
        await new Promise((resolve) => setTimeout(resolve, 1_500));
        result.ghostWhileOff = await ghostText(page);
        await page.keyboard.press("Alt+Shift+Backslash");
        await waitFor("the status to leave off", 10_000, async () => !/off/.test(await statusText(page)));
        await page.keyboard.press("Alt+Backslash");
        result.ghostOnTrigger = await finishedGhost(page);
        await page.keyboard.press("Escape");
        await page.keyboard.press("Control+Z");

        step("point the server setting at a missing command (Settings editor)");
        await setSetting(page, "dgemInfill.server.command", "dgem-infill-not-installed");
        result.missingServerMessage = await waitFor("the missing-server message", 30_000, () =>
            page.evaluate(() => {
                const toasts = [...document.querySelectorAll(".notifications-toasts .notification-toast")];
                const text = toasts.map((toast) => toast.textContent ?? "").find((t) => t.includes("dgem-infill"));
                return text ?? null;
            }),
        );
        result.statusWhenMissing = await statusText(page);
        await page.screenshot({ path: path.join(artifacts, "vscode-missing-server.png") });
        step("done");
    } catch (error) {
        result.error = String(error && error.stack ? error.stack : error);
        result.statusAtError = await statusText(page).catch(() => "");
        await page.screenshot({ path: path.join(artifacts, "vscode-failure.png") }).catch(() => undefined);
    } finally {
        await browser.close();
    }
    console.log(JSON.stringify(result));
}

main().catch((error) => {
    console.log(JSON.stringify({ error: String(error && error.stack ? error.stack : error) }));
    process.exit(1);
});
