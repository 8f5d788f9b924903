#!/usr/bin/env node
// The Parley console in a real browser: starts parley-local, drives
// headless Chromium (Debian's `chromium`, through playwright-core) through
// a whole conversation with both panes, and asserts on what each shows.
// Plain Node, no test runner: exits 0 when everything passed, 1 otherwise.
// See README.md next to it for how to run it.

import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, accessSync, constants } from "node:fs";
import { createRequire } from "node:module";
import { homedir, tmpdir } from "node:os";
import { delimiter, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = resolve(HERE, "../../..");
const BUDGET_MS = 85_000;
const STEP_MS = 20_000;
const started = Date.now();

// ------------------------------------------------------------ configuration

function executable(path) {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function onPath(names) {
  for (const name of names) {
    for (const dir of (process.env.PATH || "").split(delimiter)) {
      if (dir && executable(join(dir, name))) return join(dir, name);
    }
  }
  return null;
}

const config = {
  binary:
    process.env.PARLEY_LOCAL ||
    process.argv[2] ||
    [
      process.env.CARGO_TARGET_DIR && join(process.env.CARGO_TARGET_DIR, "debug/parley-local"),
      join(REPO, "target/debug/parley-local"),
      join(homedir(), ".cache/parley-target/debug/parley-local"),
    ].find((p) => p && executable(p)),
  chromium: process.env.CHROMIUM || onPath(["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"]),
  playwright: process.env.PLAYWRIGHT_CORE || join(homedir(), ".cache/parley-npm/node_modules/playwright-core"),
  // Serve the page from this folder instead of what the binary embeds.
  consoleDir: process.env.PARLEY_E2E_CONSOLE_DIR || "",
  // Where console.png and console-trace.png go (default: the run's temp dir, removed after a pass).
  screenshots: process.env.PARLEY_E2E_SCREENSHOTS || "",
  headed: process.env.PARLEY_E2E_HEADED === "1",
};

// ------------------------------------------------------------------ helpers

const log = (...args) => console.log(`[${((Date.now() - started) / 1000).toFixed(1).padStart(5)} s]`, ...args);

class Failure extends Error {}
/** A missing prerequisite (binary, browser, playwright-core): exit 77, "skipped". */
class Missing extends Failure {}

function check(condition, message) {
  if (!condition) throw new Failure(message);
}

/** DTMF for `keys` as 16-bit samples: 100 ms per tone, 100 ms between, as the sandbox's recognizer expects. */
function dtmf(keys, rate) {
  const rows = [697, 770, 852, 941];
  const columns = [1209, 1336, 1477];
  const pad = ["123", "456", "789", "*0#"];
  const n = rate / 10;
  const out = [];
  for (let i = 0; i < n; i++) out.push(0);
  for (const key of keys) {
    const r = pad.findIndex((row) => row.includes(key));
    const c = pad[r].indexOf(key);
    for (let i = 0; i < n; i++) {
      const t = i / rate;
      const v = 0.3 * (Math.sin(2 * Math.PI * rows[r] * t) + Math.sin(2 * Math.PI * columns[c] * t));
      out.push(Math.round(v * 32767));
    }
    for (let i = 0; i < n; i++) out.push(0);
  }
  return out;
}

/** A 16-bit mono PCM WAV. */
function wav(samples, rate) {
  const data = Buffer.alloc(samples.length * 2);
  samples.forEach((s, i) => data.writeInt16LE(Math.max(-32768, Math.min(32767, s)), i * 2));
  const header = Buffer.alloc(44);
  header.write("RIFF", 0);
  header.writeUInt32LE(36 + data.length, 4);
  header.write("WAVE", 8);
  header.write("fmt ", 12);
  header.writeUInt32LE(16, 16);
  header.writeUInt16LE(1, 20);
  header.writeUInt16LE(1, 22);
  header.writeUInt32LE(rate, 24);
  header.writeUInt32LE(rate * 2, 28);
  header.writeUInt16LE(2, 32);
  header.writeUInt16LE(16, 34);
  header.write("data", 36);
  header.writeUInt32LE(data.length, 40);
  return Buffer.concat([header, data]);
}

/** A 1×1 PNG. */
const PNG = Buffer.from(
  "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d49444154789c63f8cfc0f01f0005000101ff89993d1d0000000049454e44ae426082",
  "hex",
);

// ------------------------------------------------------------------ the run

const tmp = mkdtempSync(join(tmpdir(), "parley-console-e2e-"));
const shots = config.screenshots ? resolve(config.screenshots) : tmp;
let server = null;
let serverLog = "";
let browser = null;
let failed = false;
let missing = false;
const timings = [];

function startServer() {
  const env = { ...process.env };
  delete env.PARLEY_CONSOLE_DIR;
  if (config.consoleDir) env.PARLEY_CONSOLE_DIR = resolve(config.consoleDir);
  env.RUST_LOG ||= "warn";
  const ready = join(tmp, "ready.json");
  server = spawn(config.binary, ["serve", "--data-dir", join(tmp, "data"), "--ready-file", ready], {
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const keep = (chunk) => {
    serverLog += chunk;
    if (serverLog.length > 200_000) serverLog = serverLog.slice(-100_000);
  };
  server.stdout.on("data", keep);
  server.stderr.on("data", keep);
  const exited = new Promise((_, reject) =>
    server.once("exit", (code, signal) => reject(new Failure(`parley-local exited early (${signal || code})`))),
  );
  const waiting = (async () => {
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      if (existsSync(ready)) {
        try {
          return JSON.parse(readFileSync(ready, "utf8"));
        } catch {
          /* half written: read it again */
        }
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Failure("parley-local wrote no ready file within 30 s");
  })();
  return Promise.race([waiting, exited]);
}

async function stopServer() {
  if (!server || server.exitCode !== null || server.signalCode !== null) return;
  const gone = new Promise((r) => server.once("exit", r));
  server.kill("SIGINT");
  const timer = setTimeout(() => server.kill("SIGKILL"), 10_000);
  await gone;
  clearTimeout(timer);
}

async function main() {
  const need = (ok, message) => {
    if (!ok) throw new Missing(message);
  };
  need(config.binary && executable(config.binary), `no parley-local binary (set PARLEY_LOCAL): ${config.binary}`);
  need(config.chromium && executable(config.chromium), "no chromium on PATH (apt-get install -y chromium, or set CHROMIUM)");
  need(existsSync(config.playwright), `no playwright-core at ${config.playwright} (npm install --prefix ~/.cache/parley-npm playwright-core, or set PLAYWRIGHT_CORE)`);
  const { chromium } = createRequire(import.meta.url)(config.playwright);
  mkdirSync(shots, { recursive: true });

  // The fake microphone plays DTMF for 9 1 (then silence) into a recording.
  const mic = join(tmp, "mic.wav");
  writeFileSync(mic, wav([...dtmf("91", 16000), ...new Array(16000).fill(0)], 16000));
  const voiceNote = wav(dtmf("427", 16000), 16000);

  log(`parley-local ${config.binary}${config.consoleDir ? ` (page from ${config.consoleDir})` : " (embedded page)"}`);
  log(`chromium ${config.chromium}`);
  const [ready, launched] = await Promise.all([
    startServer(),
    chromium.launch({
      executablePath: config.chromium,
      headless: !config.headed,
      args: [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        `--use-file-for-fake-audio-capture=${mic}%noloop`,
        "--autoplay-policy=no-user-gesture-required",
      ],
    }),
  ]);
  browser = launched;
  log(`console at ${ready.console}`);

  const context = await browser.newContext({ viewport: { width: 1440, height: 900 }, permissions: ["microphone"] });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_MS);
  const pageErrors = [];
  page.on("pageerror", (error) => pageErrors.push(error.message));
  page.on("console", (message) => {
    if (message.type() === "error" && !/Failed to load resource/.test(message.text())) pageErrors.push(message.text());
  });

  const wa = page.locator("#wa-messages");
  const agent = page.locator("#agent-messages");
  const waIn = (text) => wa.locator('[data-testid="wa-message"][data-direction="in"]', { hasText: text });
  const waOut = (text) => wa.locator('[data-testid="wa-message"][data-direction="out"]', { hasText: text });
  const agentItem = (role, text) =>
    agent.locator(`[data-testid="agent-item"][data-role="${role}"]`, text === undefined ? {} : { hasText: text });
  const step = async (name, body) => {
    const t = Date.now();
    try {
      await body();
    } catch (error) {
      log(`✗ ${name}`);
      throw error;
    }
    timings.push([name, Date.now() - t]);
    log(`✓ ${name} (${Date.now() - t} ms)`);
  };

  await step("the console loads", async () => {
    await page.goto(ready.console);
    const real = await page.locator("#wa-messages").count();
    check(
      real === 1,
      "the binary serves the placeholder page: rebuild parley-local, or set PARLEY_E2E_CONSOLE_DIR=tests/console",
    );
    await page.locator('#app[data-ready="true"]').first().waitFor();
    await page.locator('#connection:has-text("Live")').first().waitFor();
  });

  const ana = { phone: "14155550123", name: "Ana Lima" };
  const bo = { phone: "447700900123", name: "Bo Carter" };
  const first = "Hi! I ordered a blue jacket last week, order 10072.";

  await step("a new customer writes; the agent sees it in a new chat", async () => {
    await page.fill("#new-phone", ana.phone);
    await page.fill("#new-name", ana.name);
    await page.click("#add-customer-btn");
    await page.locator(`[data-testid="customer-item"][data-phone="${ana.phone}"][aria-current="true"]`).first().waitFor();
    check((await page.textContent("#customer-title")) === ana.name, "the customer pane names the customer");
    await page.fill("#wa-text", first);
    await page.press("#wa-text", "Enter");
    await waIn(first).first().waitFor();
    await agentItem("CUSTOMER", first).first().waitFor();
    await page.locator('#agent-chat-status[data-state="open"]').first().waitFor();
    check((await page.inputValue("#wa-text")) === "", "the composer is cleared after sending");
  });

  await step("an uploaded voice note: a WAV attachment and its transcript for the agent", async () => {
    await page.setInputFiles("#wa-voice-file", { name: "dtmf-427.wav", mimeType: "audio/wav", buffer: voiceNote });
    await wa.locator('[data-testid="wa-message"][data-type="voice"] audio').first().waitFor();
    await agentItem("CUSTOMER", "four two seven").first().waitFor();
    const attachment = agent.locator('[data-testid="agent-item"][data-kind="ATTACHMENT"]', { has: page.locator("audio") });
    await attachment.first().waitFor();
    const meta = await attachment.first().locator('[data-testid="agent-attachment"]').textContent();
    check(/audio\/wav/.test(meta), `the agent's attachment is a WAV: ${meta}`);
    // Both players can load what they point at.
    for (const player of [attachment.first().locator("audio"), wa.locator('[data-testid="wa-message"][data-type="voice"] audio').first()]) {
      const duration = await player.evaluate(
        (audio) =>
          new Promise((done) => {
            if (audio.readyState >= 1 && isFinite(audio.duration)) return done(audio.duration);
            audio.addEventListener("loadedmetadata", () => done(audio.duration), { once: true });
            audio.addEventListener("error", () => done(-1), { once: true });
            audio.load();
          }),
      );
      check(duration > 0.3, `a voice-note player loads its audio (duration ${duration})`);
    }
    // The bridge echoes the transcript to the customer, quoting the voice note.
    await waOut("four two seven").first().waitFor();
  });

  await step("a voice note recorded with the microphone (MediaRecorder → WAV in the page)", async () => {
    await page.click("#wa-record");
    await page.locator('#wa-record[aria-pressed="true"]').first().waitFor();
    await page.waitForTimeout(1500);
    await page.click("#wa-record");
    await agentItem("CUSTOMER", "nine one").first().waitFor();
    check(
      (await wa.locator('[data-testid="wa-message"][data-type="voice"]').count()) === 2,
      "the customer pane shows both voice notes",
    );
  });

  await step("a photo with a caption; a document Connect refuses becomes an agent-only notice", async () => {
    await page.click("#wa-attach summary");
    await page.setInputFiles("#wa-file", { name: "label.png", mimeType: "image/png", buffer: PNG });
    await page.fill("#wa-caption", "This is the label");
    await page.click("#wa-file-send");
    await wa.locator('[data-testid="wa-message"][data-type="image"] img').first().waitFor();
    const image = agent.locator('[data-testid="agent-item"][data-kind="ATTACHMENT"] img');
    await image.waitFor();
    await page.waitForFunction((img) => img.complete && img.naturalWidth === 1, await image.elementHandle());
    await agentItem("CUSTOMER", "This is the label").first().waitFor();
    // Connect takes no .xyz: the agent gets a notice only agents see instead.
    await page.setInputFiles("#wa-file", { name: "notes.xyz", mimeType: "application/octet-stream", buffer: Buffer.from("not for Connect") });
    await page.selectOption("#wa-file-kind", "document");
    await page.click("#wa-file-send");
    await wa.locator('[data-testid="wa-message"][data-type="document"]', { hasText: "notes.xyz" }).first().waitFor();
    await agent.locator('[data-testid="agent-item"].notice [data-testid="agent-notice"]', { hasText: "notes.xyz" }).first().waitFor();
    await page.selectOption("#wa-file-kind", "auto");
    await page.click("#wa-attach summary");
  });

  await step("the agent answers in markdown; the customer sees WhatsApp formatting", async () => {
    await page.selectOption("#agent-format", "text/markdown");
    await page.fill("#agent-text", "Thanks, Ana! Your order **10072** arrives _tomorrow_.");
    await page.press("#agent-text", "Enter");
    await agentItem("AGENT", "arrives").first().waitFor();
    check(
      (await agentItem("AGENT", "arrives").locator("strong").textContent()) === "10072",
      "the agent pane renders the markdown",
    );
    const reply = waOut("arrives tomorrow");
    await reply.waitFor();
    check((await reply.locator("strong").textContent()) === "10072", "*bold* is bold on WhatsApp");
    check((await reply.locator("em").textContent()) === "tomorrow", "_italic_ is italic on WhatsApp");
    check((await agentItem("AGENT", "arrives").locator('[data-testid="trace-link"]').count()) === 1, "the agent's reply has a trace");
  });

  await step("a quick reply: buttons for the customer, the tap back to the agent", async () => {
    await page.click("#agent-quick-reply summary");
    await page.fill("#qr-title", "Anything else I can help with?");
    await page.fill("#qr-options", "Yes, please\nNo, thanks");
    await page.click("#qr-send");
    await agent.locator('[data-testid="agent-interactive"]', { hasText: "Anything else I can help with?" }).first().waitFor();
    const menu = waOut("Anything else I can help with?");
    await menu.waitFor();
    const titles = await menu.locator('[data-testid="wa-option"]').allTextContents();
    check(JSON.stringify(titles) === JSON.stringify(["Yes, please", "No, thanks"]), `the customer sees both buttons: ${titles}`);
    await menu.locator('[data-testid="wa-option"]', { hasText: "No, thanks" }).click();
    await waIn("No, thanks").first().waitFor();
    await agent.locator('[data-testid="agent-item"][data-role="CUSTOMER"] .body', { hasText: /^No, thanks$/ }).first().waitFor();
    await page.click("#agent-quick-reply summary");
  });

  await step("a location; the agent's .wav arrives as a voice note", async () => {
    await page.click("#wa-location summary");
    await page.fill("#wa-place", "Our shop");
    await page.click("#wa-location-send");
    await waIn("Our shop").first().waitFor();
    await agentItem("CUSTOMER", "Location: Our shop").first().waitFor();
    await page.click("#wa-location summary");
    const before = await wa.locator('[data-testid="wa-message"][data-direction="out"] audio').count();
    await page.setInputFiles("#agent-file", { name: "directions.wav", mimeType: "audio/wav", buffer: voiceNote });
    await agent.locator('[data-testid="agent-item"][data-role="AGENT"][data-kind="ATTACHMENT"]', { hasText: "directions.wav" }).first().waitFor();
    await page.waitForFunction(
      (n) => document.querySelectorAll('#wa-messages [data-direction="out"] audio').length > n,
      before,
    );
  });

  await step("a second customer; switching between conversations", async () => {
    await page.fill("#new-phone", bo.phone);
    await page.fill("#new-name", bo.name);
    await page.click("#add-customer-btn");
    await page.fill("#wa-text", "Hello from Bo");
    await page.press("#wa-text", "Enter");
    await agentItem("CUSTOMER", "Hello from Bo").first().waitFor();
    check((await agentItem("CUSTOMER", first).count()) === 0, "Bo's agent pane shows only Bo's chat");
    check((await page.locator('[data-testid="customer-item"]').count()) === 2, "two customers are listed");
    await page.click(`[data-testid="customer-item"][data-phone="${ana.phone}"]`);
    await agentItem("CUSTOMER", first).first().waitFor();
    await waOut("Anything else I can help with?").first().waitFor();
    check((await agentItem("CUSTOMER", "Hello from Bo").count()) === 0, "Ana's agent pane shows only Ana's chat");
    await page.locator('[data-testid="wa-message"]').last().scrollIntoViewIfNeeded();
    await page.screenshot({ path: join(shots, "console.png") });
  });

  await step("a message's trace: a waterfall across the gateway and the session service", async () => {
    const link = wa.locator('[data-testid="wa-message"][data-type="voice"] [data-testid="trace-link"]').first();
    const traceId = await link.getAttribute("data-trace-id");
    check(/^[0-9a-f]{32}$/.test(traceId || ""), `the voice note has a trace id: ${traceId}`);
    await link.click();
    const dialog = page.locator(`#trace-dialog[open][data-trace-id="${traceId}"]`);
    await dialog.waitFor();
    for (const component of ["gateway", "session", "transcriber", "connect-relay"]) {
      await dialog.locator(`[data-testid="span-row"][data-component="${component}"]`).first().waitFor();
    }
    const rows = await dialog.locator('[data-testid="span-row"]').count();
    check(rows >= 10, `the trace has its spans (${rows})`);
    const nested = await dialog.locator('[data-testid="span-row"][data-depth="2"]').count();
    check(nested > 0, "spans nest under their parents");
    await dialog.locator('[data-testid="span-row"][data-component="transcriber"] .span-button').first().click();
    await page.locator("#trace-detail:not([hidden])").first().waitFor();
    await page.screenshot({ path: join(shots, "console-trace.png") });
    await page.keyboard.press("Escape");
    await page.locator("#trace-dialog:not([open])").waitFor({ state: "attached" });
    check(!(await page.locator("#trace-dialog").evaluate((d) => d.open)), "Escape closes the trace");
  });

  await step("the agent ends the chat; the customer gets the goodbye", async () => {
    await page.click("#agent-typing");
    await agent.locator('[data-testid="agent-item"][data-event="typing"]').first().waitFor();
    await page.click("#agent-end");
    await page.locator('#agent-chat-status[data-state="ended"]').first().waitFor();
    await agent.locator('[data-testid="agent-item"][data-event="chat.ended"]').first().waitFor();
    await waOut("Bye").first().waitFor();
    check(await page.locator("#agent-text").isDisabled(), "an ended chat takes no more replies");
  });

  check(pageErrors.length === 0, `the page reported errors:\n  ${pageErrors.join("\n  ")}`);
}

const watchdog = setTimeout(async () => {
  console.error(`FAIL: the test ran past ${BUDGET_MS / 1000} s`);
  failed = true;
  await finish();
}, BUDGET_MS);

let finishing = null;
function finish() {
  finishing ||= (async () => {
    clearTimeout(watchdog);
    if (failed && browser) {
      try {
        const pages = browser.contexts().flatMap((c) => c.pages());
        if (pages[0]) await pages[0].screenshot({ path: join(tmp, "failure.png") });
      } catch {
        /* the browser is gone */
      }
    }
    await browser?.close().catch(() => {});
    await stopServer();
    if (missing) {
      rmSync(tmp, { recursive: true, force: true });
    } else if (failed) {
      writeFileSync(join(tmp, "parley-local.log"), serverLog);
      console.error(`parley-local's output, the failure's screenshot: ${tmp}`);
      console.error(serverLog.split("\n").slice(-40).join("\n"));
    } else {
      rmSync(tmp, { recursive: true, force: true });
      log(config.screenshots ? `screenshots: ${join(shots, "console.png")}, ${join(shots, "console-trace.png")}` : "(PARLEY_E2E_SCREENSHOTS=docs keeps the screenshots)");
    }
    const total = ((Date.now() - started) / 1000).toFixed(1);
    console.log(missing ? "SKIP: a prerequisite is missing" : failed ? `FAIL after ${total} s` : `PASS: ${timings.length} steps in ${total} s`);
    process.exit(missing ? 77 : failed ? 1 : 0);
  })();
  return finishing;
}

process.on("SIGINT", () => {
  failed = true;
  finish();
});

main()
  .catch((error) => {
    failed = true;
    missing = error instanceof Missing;
    console.error(`${missing ? "SKIP" : "FAIL"}: ${error instanceof Failure ? error.message : error.stack || error}`);
  })
  .finally(finish);
