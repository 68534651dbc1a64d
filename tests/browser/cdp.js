// cdp.js: headless Chromium driven over the DevTools protocol on a pipe
// (--remote-debugging-pipe: messages are JSON texts ended by a NUL byte, sent on
// fd 3 and received on fd 4), so no WebSocket client, npm package or open port
// is needed. One page target, flattened session; every network request the
// page makes is recorded so a test can assert that nothing left the machine.
'use strict';
const { spawn } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--disable-default-apps', '--disable-extensions', '--mute-audio', '--remote-debugging-pipe'];

class Browser {
  static async launch(executable) {
    const b = new Browser();
    b.userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'autointerp-chromium-'));
    b.proc = spawn(executable, [...FLAGS, '--user-data-dir=' + b.userDataDir, 'about:blank'],
      { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'] });
    b.stderr = '';
    b.proc.stderr.on('data', d => { b.stderr += d.toString(); });
    b.nextId = 0;
    b.waiting = new Map();
    b.listeners = [];
    b.requests = [];
    b.exceptions = [];
    let buf = Buffer.alloc(0);
    b.proc.stdio[4].on('data', chunk => {
      buf = Buffer.concat([buf, chunk]);
      let i;
      while ((i = buf.indexOf(0)) >= 0) {
        const msg = JSON.parse(buf.subarray(0, i).toString('utf8'));
        buf = buf.subarray(i + 1);
        b.dispatch(msg);
      }
    });
    b.exited = new Promise(res => b.proc.on('exit', res));
    const { targetId } = await b.send('Target.createTarget', { url: 'about:blank' });
    const { sessionId } = await b.send('Target.attachToTarget', { targetId, flatten: true });
    b.session = sessionId;
    await b.page('Page.enable');
    await b.page('Runtime.enable');
    await b.page('Network.enable');
    await b.page('Emulation.setDeviceMetricsOverride',
      { width: 1280, height: 1000, deviceScaleFactor: 1, mobile: false });
    b.on('Network.requestWillBeSent', p => b.requests.push(p.request.url));
    b.on('Runtime.exceptionThrown', p => b.exceptions.push(JSON.stringify(p.exceptionDetails)));
    return b;
  }

  dispatch(msg) {
    if (msg.id !== undefined && this.waiting.has(msg.id)) {
      const { resolve, reject, method } = this.waiting.get(msg.id);
      this.waiting.delete(msg.id);
      if (msg.error) reject(new Error(method + ': ' + JSON.stringify(msg.error)));
      else resolve(msg.result);
      return;
    }
    for (const l of this.listeners) if (l.method === msg.method) l.fn(msg.params || {});
  }

  on(method, fn) { this.listeners.push({ method, fn }); }

  send(method, params = {}, sessionId) {
    return new Promise((resolve, reject) => {
      const id = ++this.nextId;
      this.waiting.set(id, { resolve, reject, method });
      this.proc.stdio[3].write(JSON.stringify({ id, method, params, sessionId }) + '\0');
    });
  }

  page(method, params) { return this.send(method, params, this.session); }

  once(method, timeoutMs) {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('timeout waiting for ' + method)), timeoutMs);
      const l = { method, fn: p => { clearTimeout(t); this.listeners.splice(this.listeners.indexOf(l), 1); resolve(p); } };
      this.listeners.push(l);
    });
  }

  // Navigate and wait for the load event; returns the milliseconds it took.
  async goto(url, timeoutMs = 30000) {
    const loaded = this.once('Page.loadEventFired', timeoutMs);
    const t0 = Date.now();
    const r = await this.page('Page.navigate', { url });
    if (r.errorText) throw new Error('navigate ' + url + ': ' + r.errorText);
    await loaded;
    return Date.now() - t0;
  }

  async eval(expression) {
    const r = await this.page('Runtime.evaluate', { expression, returnByValue: true, awaitPromise: true });
    if (r.exceptionDetails) throw new Error('evaluate: ' + JSON.stringify(r.exceptionDetails).slice(0, 500));
    return r.result.value;
  }

  async screenshot(file) {
    const { data } = await this.page('Page.captureScreenshot', { format: 'png', captureBeyondViewport: false });
    fs.writeFileSync(file, Buffer.from(data, 'base64'));
  }

  // Ask the browser to quit and wait for it (its helper processes write to the
  // profile until then); kill only the process we started, and only if it hangs.
  async close() {
    this.send('Browser.close').catch(() => {});
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 10000);
    await this.exited;
    clearTimeout(timer);
    try {
      fs.rmSync(this.userDataDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
    } catch (e) {
      console.log('# could not remove ' + this.userDataDir + ': ' + e.message);
    }
  }
}

module.exports = { Browser };
