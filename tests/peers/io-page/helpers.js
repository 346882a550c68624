// What the test pages of this folder share: waiting, and an emit whose ack resolves a promise.
"use strict";
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(cond, what, ms = 10000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("timed out waiting for " + what);
    await sleep(20);
  }
}
const call = (sock, ...args) => new Promise((resolve) => sock.emit(...args, resolve));
