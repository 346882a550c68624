// Drives the built-in chat page in headless Chromium over the DevTools protocol (with `ws`), for
// tests/serve.rs. Usage:
//   node serve-browser.js --url http://127.0.0.1:PORT/ --name Ana --room 7 --send "Olá mundo!"
//                         --expect "text from the peer" [--early "typed before connecting"]
//                         [--screenshot out.png] [--leave] [--chromium PATH]
//   node serve-browser.js --result --url http://127.0.0.1:PORT/some-page.html
// With --result, it only opens the page and waits for the page's own scenario to set
// `window.result`, then prints {"ev":"result","value":...} (a page's error fails the run).
// With --leave, it clicks "leave" at the end, prints {"ev":"left"}, and keeps the browser open
// until a line "done" on stdin (so the test sees what leaving did, not the browser's exit).
// With --early, that message is sent in the same moment as the join, before the page is connected
// (so it waits in the page's queue), and "joined" says whether the relay acknowledged it.
// Prints JSON lines: {"ev":"joined"}, {"ev":"sent","acked":true}, {"ev":"received",...},
// {"ev":"screenshot","path":...}, then exits 0; on failure {"ev":"fail","error":...} and exit 1.
// Between "joined" and sending, it waits for a line "go" on stdin (the test's peer is ready).
const { spawn } = require("child_process");
const fs = require("fs");
const os = require("os");
const path = require("path");
const readline = require("readline");
const WebSocket = require("ws");

const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1] : dflt;
};
const url = opt("--url", "http://127.0.0.1:3001/");
const name = opt("--name", "Ana");
const room = opt("--room", "7");
const sendText = opt("--send", "Olá mundo!");
const expectText = opt("--expect", null);
const earlyText = opt("--early", null);
const shot = opt("--screenshot", null);
const resultMode = argv.includes("--result");
const leave = argv.includes("--leave");
const chromiumPath = opt("--chromium", "/usr/bin/chromium");
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");

const profile = fs.mkdtempSync(path.join(os.tmpdir(), "wschat-chromium-"));
const chrome = spawn(
  chromiumPath,
  [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--remote-debugging-port=0",
    "--remote-debugging-address=127.0.0.1",
    `--user-data-dir=${profile}`,
    "about:blank",
  ],
  // Its own process group, so that cleanup ends the browser's zygote, GPU and renderer children too
  // (killing only the main process left them running). TMPDIR inside the profile: the browser's
  // own temporary folders (the singleton socket's) go with the profile, where a killed browser
  // would leave them in /tmp.
  {
    stdio: ["ignore", "ignore", "pipe"],
    detached: true,
    env: { ...process.env, TMPDIR: profile },
  },
);

function cleanup(code) {
  try {
    process.kill(-chrome.pid, "SIGKILL");
  } catch (_) {
    try {
      chrome.kill("SIGKILL");
    } catch (_) {}
  }
  setTimeout(() => {
    try {
      fs.rmSync(profile, { recursive: true, force: true });
    } catch (_) {}
    process.exit(code);
  }, 100);
}
function fail(error) {
  out({ ev: "fail", error: String(error && error.stack ? error.stack : error) });
  cleanup(1);
}
setTimeout(() => fail("timeout: the browser scenario took more than 40 s"), 40000);
for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => cleanup(1));

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Resolves when the test writes `word` on a line of stdin.
const stdinLines = readline.createInterface({ input: process.stdin });
const waiting = new Map();
stdinLines.on("line", (l) => {
  const resolve = waiting.get(l.trim());
  if (resolve) {
    waiting.delete(l.trim());
    resolve();
  }
});
const line = (word) => new Promise((resolve) => waiting.set(word, resolve));

function devtoolsUrl() {
  return new Promise((resolve, reject) => {
    let buf = "";
    chrome.stderr.on("data", (d) => {
      buf += d.toString();
      const m = buf.match(/DevTools listening on (ws:\/\/\S+)/);
      if (m) resolve(m[1]);
    });
    chrome.on("exit", (code) => reject(new Error("chromium exited with " + code + ": " + buf.slice(-2000))));
  });
}

async function main() {
  const browserWs = await devtoolsUrl();
  const ws = new WebSocket(browserWs, { perMessageDeflate: false });
  await new Promise((r, j) => {
    ws.once("open", r);
    ws.once("error", j);
  });
  let next = 1;
  const pending = new Map();
  ws.on("message", (data) => {
    const msg = JSON.parse(data.toString());
    if (msg.id && pending.has(msg.id)) {
      const { resolve, reject } = pending.get(msg.id);
      pending.delete(msg.id);
      if (msg.error) reject(new Error(JSON.stringify(msg.error)));
      else resolve(msg.result);
    }
  });
  const send = (method, params = {}, sessionId) =>
    new Promise((resolve, reject) => {
      const id = next++;
      pending.set(id, { resolve, reject });
      ws.send(JSON.stringify({ id, method, params, sessionId }));
    });

  const { targetId } = await send("Target.createTarget", { url: "about:blank" });
  const { sessionId } = await send("Target.attachToTarget", { targetId, flatten: true });
  const page = (method, params) => send(method, params, sessionId);
  const evaluate = async (expression) => {
    const r = await page("Runtime.evaluate", { expression, awaitPromise: true, returnByValue: true });
    if (r.exceptionDetails) throw new Error("page error: " + JSON.stringify(r.exceptionDetails));
    return r.result.value;
  };
  const waitFor = async (expression, what, ms = 10000) => {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      if (await evaluate(expression)) return;
      await sleep(50);
    }
    throw new Error("timed out waiting for " + what);
  };

  await page("Emulation.setDeviceMetricsOverride", { width: 480, height: 720, deviceScaleFactor: 1, mobile: false });
  await page("Page.enable");
  await page("Runtime.enable");
  await page("Page.navigate", { url });
  if (resultMode) {
    await waitFor("window.result !== undefined", "the page's result", 35000);
    const value = await evaluate("window.result");
    if (value && value.error) throw new Error("the page's scenario: " + value.error);
    out({ ev: "result", value });
    ws.close();
    cleanup(0);
    return;
  }
  await waitFor("document.readyState === 'complete' && !!document.getElementById('join-form')", "the page");
  const title = await evaluate("document.querySelector('.subtitle').textContent");
  await evaluate(`(() => {
    document.getElementById('name').value = ${JSON.stringify(name)};
    document.getElementById('room').value = ${JSON.stringify(room)};
    document.getElementById('join').click();
    const early = ${JSON.stringify(earlyText)};
    if (early !== null) {
      document.getElementById('message').value = early;
      document.getElementById('send').click();
    }
    return true;
  })()`);
  await waitFor("document.getElementById('live-dot').classList.contains('on')", "the Socket.IO connection");
  await waitFor("[...document.querySelectorAll('.notice')].some(n => n.textContent.includes('joined'))", "the join ack");
  let early = null;
  if (earlyText !== null) {
    // The early message's ack: a tick on its bubble, or an error notice.
    await waitFor(
      "!!document.querySelector('.message.you .tick') || !!document.querySelector('.notice.error')",
      "the early message's ack",
    );
    early = await evaluate(`(() => {
      const e = document.querySelector('.notice.error');
      return { acked: !!document.querySelector('.message.you .tick'), error: e ? e.textContent : null };
    })()`);
  }
  out({ ev: "joined", subtitle: title, early });

  // Wait for the test's go-ahead (its socket.io-client peer is in the room).
  await line("go");

  await evaluate(`(() => {
    const input = document.getElementById('message');
    input.value = ${JSON.stringify(sendText)};
    document.getElementById('send').click();
    return true;
  })()`);
  await waitFor("!![...document.querySelectorAll('.message.you')].pop().querySelector('.tick')", "the send_message ack");
  const mine = await evaluate(`(() => {
    const b = [...document.querySelectorAll('.message.you')].pop();
    return { text: b.querySelector('.message-content').textContent, author: b.querySelector('.author').textContent,
             time: b.querySelector('.time').textContent };
  })()`);
  out({ ev: "sent", acked: true, bubble: mine });

  if (expectText) {
    await waitFor(
      `[...document.querySelectorAll('.message.other .message-content')].some(e => e.textContent === ${JSON.stringify(expectText)})`,
      "the peer's message",
    );
    const theirs = await evaluate(`(() => {
      const b = [...document.querySelectorAll('.message.other')].pop();
      const r = b.querySelector('.message-content').getBoundingClientRect();
      const m = document.querySelector('.message.you .message-content').getBoundingClientRect();
      return { text: b.querySelector('.message-content').textContent, author: b.querySelector('.author').textContent,
               time: b.querySelector('.time').textContent, mineRightOfTheirs: m.left > r.right };
    })()`);
    out({ ev: "received", bubble: theirs });
  }
  if (shot) {
    const { data } = await page("Page.captureScreenshot", { format: "png" });
    fs.writeFileSync(shot, Buffer.from(data, "base64"));
    out({ ev: "screenshot", path: shot });
  }
  if (leave) {
    await evaluate("document.getElementById('leave').click(), true");
    await waitFor("!document.getElementById('join-screen').hidden", "the join screen");
    out({ ev: "left" });
    await line("done");
  }
  ws.close();
  cleanup(0);
}

main().catch(fail);
