// A headless chromium that tests/system/test_web_app.py steers, one JSON request per stdin line,
// one JSON answer per stdout line: {"ok": true, "value": ...} or {"ok": false, "error": "..."}.
// playwright-core only (no browser download): the system's chromium, given as argv[2].
// Every step has a timeout; the Python side bounds the whole run as well.
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const [executablePath, userDataDir, ...chromiumArgs] = process.argv.slice(2);
const STEP_MS = 15000;
const logs = [];
let context;
let page;

async function step(req) {
  const timeout = req.timeout_ms ?? STEP_MS;
  switch (req.op) {
    case "launch":
      context = await chromium.launchPersistentContext(userDataDir, {
        executablePath,
        headless: true,
        args: chromiumArgs,
        viewport: { width: 412, height: 860 },
        deviceScaleFactor: 1,
        timeout,
      });
      page = context.pages()[0] ?? (await context.newPage());
      page.on("console", (m) => logs.push(`${m.type()}: ${m.text()}`));
      page.on("pageerror", (e) => logs.push(`pageerror: ${e.message}`));
      return null;
    case "goto":
      await page.goto(req.url, { timeout, waitUntil: "load" });
      return page.url();
    case "reload":
      await page.reload({ timeout, waitUntil: "load" });
      return page.url();
    case "wait_text":
      await page.locator(req.selector, { hasText: req.text }).first().waitFor({ timeout });
      return null;
    case "wait_attr":
      await page.waitForFunction(
        ([sel, name, value]) => document.querySelector(sel)?.getAttribute(name) === value,
        [req.selector, req.name, req.value],
        { timeout },
      );
      return null;
    case "text":
      return await page.locator(req.selector).first().innerText({ timeout });
    case "attr":
      return await page.locator(req.selector).first().getAttribute(req.name, { timeout });
    case "fill":
      await page.locator(req.selector).first().fill(req.value, { timeout });
      return null;
    case "click":
      await page.locator(req.selector).first().click({ timeout });
      return null;
    case "eval":
      return await page.evaluate(req.expr);
    case "set_offline":
      await context.setOffline(Boolean(req.offline));
      return null;
    case "viewport":
      await page.setViewportSize({ width: req.width, height: req.height });
      return null;
    case "screenshot":
      // (animations: "disabled" finishes a switch's transition before the picture.)
      await page.screenshot({
        path: req.path, fullPage: Boolean(req.full_page), animations: "disabled", timeout,
      });
      return req.path;
    case "logs":
      return logs.splice(0);
    case "close":
      await context?.close();
      return null;
    default:
      throw new Error(`unknown op ${req.op}`);
  }
}

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  let answer;
  try {
    answer = { ok: true, value: (await step(JSON.parse(line))) ?? null };
  } catch (err) {
    answer = { ok: false, error: String(err?.message ?? err).slice(0, 2000) };
  }
  process.stdout.write(JSON.stringify(answer) + "\n");
  if (JSON.parse(line).op === "close") break;
}
process.exit(0);
