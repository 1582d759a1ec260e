// Drives Debian's headless Chromium through the DevTools protocol over a
// pipe (--remote-debugging-pipe: JSON messages ended by NUL on fds 3 and
// 4), for crates/baton/tests/e2e/dashboard.rs. No package beyond node.
//
// Usage: node dashboard.mjs CHROMIUM URL TOKEN_FILE SCREENSHOT
// The admin token is read from TOKEN_FILE (never an argument itself) and
// typed into the page's form. Prints, one line each:
//   chromium pid N
//   login shown
//   services shown
//   screenshot taken
//   observed JSON   (what the page showed during the deploy)
// Every wait is on the page's own changes (a MutationObserver), bounded
// by WAIT_MS; a broken page makes this exit non-zero.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [chromiumPath, url, tokenFile, screenshot] = process.argv.slice(2);
const token = readFileSync(tokenFile, 'utf8').trim();
const WAIT_MS = 60000;

const profile = mkdtempSync(join(tmpdir(), 'baton-chromium-'));
const args = [
  '--headless', '--remote-debugging-pipe', '--disable-gpu', '--no-first-run', '--no-default-browser-check',
  '--disable-extensions', '--disable-background-networking', '--disable-sync', '--disable-dev-shm-usage',
  '--hide-scrollbars', '--mute-audio', '--window-size=1360,1000', `--user-data-dir=${profile}`,
];
if (process.getuid && process.getuid() === 0) args.push('--no-sandbox');
args.push('about:blank');
const chrome = spawn(chromiumPath, args, { stdio: ['ignore', 'ignore', 'ignore', 'pipe', 'pipe'] });
console.log(`chromium pid ${chrome.pid}`);
const cleanup = () => {
  try { chrome.kill('SIGKILL'); } catch (e) { /* gone */ }
  try { rmSync(profile, { recursive: true, force: true }); } catch (e) { /* best effort */ }
};
process.on('exit', cleanup);
const fail = (why) => {
  console.error(`dashboard driver: ${why}`);
  process.exit(1);
};
chrome.on('exit', (code) => fail(`chromium exited (${code})`));

// ---- the protocol ------------------------------------------------------
const toChrome = chrome.stdio[3];
const fromChrome = chrome.stdio[4];
let nextId = 1;
const pending = new Map();
const listeners = [];
let buffer = Buffer.alloc(0);
fromChrome.on('data', (chunk) => {
  buffer = Buffer.concat([buffer, chunk]);
  let end;
  while ((end = buffer.indexOf(0)) >= 0) {
    const message = JSON.parse(buffer.subarray(0, end).toString('utf8'));
    buffer = buffer.subarray(end + 1);
    if (message.id !== undefined && pending.has(message.id)) {
      const { resolve, reject, method } = pending.get(message.id);
      pending.delete(message.id);
      if (message.error) reject(new Error(`${method}: ${JSON.stringify(message.error)}`));
      else resolve(message.result);
    } else if (message.method) {
      for (const l of listeners) l(message);
    }
  }
});

function send(method, params = {}, sessionId) {
  const id = nextId++;
  const message = { id, method, params };
  if (sessionId) message.sessionId = sessionId;
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject, method });
    toChrome.write(JSON.stringify(message) + '\0');
  });
}

function once(method, sessionId) {
  return new Promise((resolve) => {
    const l = (m) => {
      if (m.method === method && m.sessionId === sessionId) {
        listeners.splice(listeners.indexOf(l), 1);
        resolve(m.params);
      }
    };
    listeners.push(l);
  });
}

// ---- the page ----------------------------------------------------------
async function main() {
  const { targetId } = await send('Target.createTarget', { url: 'about:blank' });
  const { sessionId } = await send('Target.attachToTarget', { targetId, flatten: true });
  const page = (method, params) => send(method, params, sessionId);
  await page('Page.enable');
  await page('Runtime.enable');
  let navigations = 0;
  listeners.push((m) => {
    if (m.sessionId === sessionId && m.method === 'Page.frameNavigated' && !m.params.frame.parentId) {
      navigations += 1;
    }
  });
  const evaluate = async (expression) => {
    const r = await page('Runtime.evaluate', { expression, awaitPromise: true, returnByValue: true });
    if (r.exceptionDetails) {
      throw new Error(`${expression.slice(0, 80)}…: ${r.exceptionDetails.exception?.description || r.exceptionDetails.text}`);
    }
    return r.result.value;
  };
  // Resolves with the value of `condition` once it is truthy: checked now
  // and after every change of the page.
  const until = (condition) => evaluate(`new Promise((resolve, reject) => {
    const check = () => {
      let v;
      try { v = (${condition}); } catch (e) { v = null; }
      if (v) { observer.disconnect(); clearTimeout(timer); resolve(v); }
    };
    const observer = new MutationObserver(check);
    observer.observe(document, { subtree: true, childList: true, attributes: true, characterData: true });
    const timer = setTimeout(() => { observer.disconnect(); reject(new Error('not seen: ' + ${JSON.stringify(condition)})); }, ${WAIT_MS});
    check();
  })`);

  const loaded = once('Page.loadEventFired', sessionId);
  await page('Page.navigate', { url });
  await loaded;
  // Without a token the stream answers 401: the page asks for one.
  await until(`!document.getElementById('login').hidden`);
  console.log('login shown');
  await page('Runtime.evaluate', { expression: `document.getElementById('token').focus()` });
  await page('Input.insertText', { text: token });
  await evaluate(`document.getElementById('login').requestSubmit()`);
  await until(`document.querySelector('#service-web[data-version="v1"] [data-address]')`);
  // What the page shows from now on, recorded as it changes: the deploy's
  // state and share, its judged steps, each set's share. A marker set now
  // would be lost by a reload.
  await evaluate(`(() => {
    window.batonMarker = 'no reload';
    window.batonSeen = [];
    const record = () => {
      const d = document.getElementById('deploy-web');
      const sets = Array.from(document.querySelectorAll('#service-web tr[data-share]'))
        .map((r) => r.dataset.version + '=' + r.dataset.share).join(' ');
      const key = d ? [d.dataset.state, d.dataset.share, d.dataset.steps, sets].join('|') : 'none|||' + sets;
      if (window.batonSeen[window.batonSeen.length - 1] !== key) window.batonSeen.push(key);
    };
    new MutationObserver(record).observe(document, { subtree: true, childList: true, attributes: true });
    record();
    return true;
  })()`);
  console.log('services shown');
  const before = navigations;

  // The canary's second step, on the page: the moment of the screenshot.
  await until(`(() => { const d = document.getElementById('deploy-web');
    return d && d.dataset.state === 'running' && d.dataset.share === '50'; })()`);
  const metrics = await page('Page.getLayoutMetrics');
  const height = Math.min(2400, Math.ceil(metrics.cssContentSize.height));
  await page('Emulation.setDeviceMetricsOverride', { width: 1360, height, deviceScaleFactor: 1, mobile: false });
  const shot = await page('Page.captureScreenshot', { format: 'png' });
  writeFileSync(screenshot, Buffer.from(shot.data, 'base64'));
  await page('Emulation.clearDeviceMetricsOverride');
  console.log('screenshot taken');

  await until(`(() => { const d = document.getElementById('deploy-web');
    return d && d.dataset.state !== 'running'; })()`);
  const seen = await evaluate('window.batonSeen');
  const marker = await evaluate('window.batonMarker');
  console.log('observed ' + JSON.stringify({ seen, marker, navigations: navigations - before }));
  process.exit(0);
}

main().catch((e) => fail(e.stack || String(e)));
