// idlegrid browser provider: the page. It wires the key store, the Ollama
// model list and the provider connection to the controls, and shows the
// connection, jobs and signed earnings live. Job data is only ever written
// with textContent.

import { formatAmount } from "./codec.js";
import * as keystore from "./keystore.js";
import { listModels } from "./ollama.js";
import { Provider } from "./provider.js";

const $ = (id) => document.getElementById(id);
const DEFAULT_PRICE_IN = "200000";
const DEFAULT_PRICE_OUT = "600000";
const panel = $("status-panel");
const ollama = panel.dataset.ollama;
const ui = { id: null, models: [], provider: null, manualPause: false };

function log(text) {
  const li = document.createElement("li");
  li.textContent = `${new Date().toLocaleTimeString()} ${text}`;
  const list = $("log");
  list.prepend(li);
  while (list.children.length > 50) list.lastChild.remove();
}

function rememberServer() {
  // The server is part of the URL (the page's security policy names it);
  // remember the visitor's choice for the next visit.
  const params = new URLSearchParams(location.search);
  if (params.has("ollama")) {
    localStorage.setItem("idlegrid.ollama", ollama);
    return false;
  }
  const saved = localStorage.getItem("idlegrid.ollama");
  if (saved && saved !== ollama) {
    location.replace(`${location.pathname}?ollama=${encodeURIComponent(saved)}`);
    return true;
  }
  return false;
}

function showKey() {
  $("address").textContent = ui.id.address;
  $("pubkey").textContent = ui.id.publicHex;
  $("explorer-link").href = `/ui/explorer/provider/${ui.id.address}`;
  showLedger();
}

function showCORSHelp(show) {
  $("cors-help").hidden = !show;
  for (const id of ["cors-origin", "cors-origin-mac", "cors-origin-systemd"]) $(id).textContent = location.origin;
}

async function loadModels() {
  const status = $("ollama-status");
  status.textContent = `Asking ${ollama} for its models…`;
  const body = $("models").tBodies[0];
  try {
    const models = await listModels(ollama);
    showCORSHelp(false);
    body.replaceChildren();
    ui.models = models;
    for (const m of models) {
      const tr = document.createElement("tr");
      const cell = (content, cls) => {
        const td = document.createElement("td");
        if (cls) td.className = cls;
        if (content instanceof Node) td.append(content);
        else td.textContent = content;
        tr.append(td);
      };
      const offer = Object.assign(document.createElement("input"), { type: "checkbox", checked: true });
      offer.dataset.model = m.name;
      offer.className = "offer";
      const price = (value, cls) => Object.assign(document.createElement("input"), { type: "text", value, className: cls, inputMode: "numeric", size: 9 });
      cell(offer);
      cell(m.name);
      cell(m.digest.length > 19 ? m.digest.slice(0, 19) + "…" : m.digest, "mono");
      cell(m.quantization || "—");
      cell(price(DEFAULT_PRICE_IN, "price-in"), "num");
      cell(price(DEFAULT_PRICE_OUT, "price-out"), "num");
      tr.title = m.digest;
      body.append(tr);
    }
    if (models.length === 0) {
      body.innerHTML = '<tr><td colspan="6" class="empty">This Ollama has no models: pull one (ollama pull llama3.2:1b).</td></tr>';
    }
    status.textContent = `${models.length} model${models.length === 1 ? "" : "s"} at ${ollama}.`;
  } catch (err) {
    status.textContent = err.message;
    ui.models = [];
    showCORSHelp(Boolean(err.unreachable));
  }
  updateControls();
}

// offered reads the models table: the checked models with their prices.
function offered() {
  const out = [];
  for (const tr of $("models").tBodies[0].rows) {
    const box = tr.querySelector("input.offer");
    if (!box || !box.checked) continue;
    const m = ui.models.find((x) => x.name === box.dataset.model);
    const pin = tr.querySelector("input.price-in").value.trim();
    const pout = tr.querySelector("input.price-out").value.trim();
    if (!/^\d{1,19}$/.test(pin) || !/^\d{1,19}$/.test(pout)) throw new Error(`prices of ${m.name} must be whole numbers of base units`);
    out.push({ ...m, price_in: BigInt(pin), price_out: BigInt(pout) });
  }
  return out;
}

function updateControls() {
  const running = ui.provider && !ui.provider.stopped;
  $("start").disabled = !ui.id || (!running && ui.models.length === 0);
  $("start").textContent = running ? "Stop" : "Start providing";
  $("pause").disabled = !ui.id;
  $("pause").textContent = ui.manualPause ? "Resume" : "Pause";
  $("download-key").disabled = !ui.id;
  $("new-key").disabled = !ui.id || running;
  $("key-file").disabled = running;
  for (const el of document.querySelectorAll("#models input, #slots")) el.disabled = running;
}

// showLedger reads the provider's account from the gateway's explorer:
// what its settled receipts put in escrow (released to its balance after
// the escrow period), its balance, stake and unvested rewards.
async function showLedger() {
  if (!ui.id) return;
  const detail = $("ledger-detail");
  try {
    const res = await fetch(`/ui/explorer/provider/${encodeURIComponent(ui.id.address)}/earnings`, { cache: "no-store" });
    const e = await res.json();
    if (!res.ok) throw new Error(e.error || `HTTP ${res.status}`);
    if (!e.ledger) {
      $("escrow").textContent = "–";
      detail.textContent = "this gateway runs without a ledger";
    } else if (!e.known) {
      $("escrow").textContent = formatAmount(0);
      detail.textContent = "this key has no account on the ledger yet: register and stake it to be paid";
    } else {
      $("escrow").textContent = formatAmount(e.escrow);
      detail.textContent = `tokens; balance ${formatAmount(e.balance)}, stake ${formatAmount(e.stake)}, vesting ${formatAmount(e.vesting)}`;
    }
  } catch (err) {
    detail.textContent = `the ledger could not be read: ${err.message}`;
  }
}

function showStats(s) {
  $("served").textContent = String(s.served);
  $("failed").textContent = String(s.failed);
  $("running").textContent = String(s.running);
  $("tokens").textContent = String(s.tokens);
  $("earned").textContent = formatAmount(s.earned);
}

function showJob(r) {
  const body = $("jobs").tBodies[0];
  const none = body.querySelector("tr.none");
  if (none) none.remove();
  let tr = body.querySelector(`tr[data-id="${CSS.escape(r.id)}"]`);
  if (!tr) {
    tr = document.createElement("tr");
    tr.dataset.id = r.id;
    for (let i = 0; i < 6; i++) tr.append(document.createElement("td"));
    tr.cells[0].className = "mono";
    for (const i of [2, 3, 4]) tr.cells[i].className = "num";
    body.prepend(tr);
    while (body.rows.length > 100) body.lastChild.remove();
  }
  const values = [r.id, r.model, String(r.prompt), String(r.completion), formatAmount(r.amount), r.state];
  values.forEach((v, i) => (tr.cells[i].textContent = v));
}

function start() {
  let models;
  try {
    models = offered();
  } catch (err) {
    log(err.message);
    return;
  }
  if (models.length === 0) {
    log("Choose at least one model to offer.");
    return;
  }
  const slots = Math.min(Math.max(parseInt($("slots").value, 10) || 1, 1), 16);
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const p = new Provider({ url: `${scheme}//${location.host}/v1/providers/connect`, identity: ui.id, ollama, models, slots });
  p.addEventListener("state", (ev) => {
    $("state").textContent = ev.detail.state;
    $("state-detail").textContent = ev.detail.message ? ` ${ev.detail.message}` : "";
    log(`${ev.detail.state}${ev.detail.message ? ": " + ev.detail.message : ""}`);
    updateControls();
  });
  p.addEventListener("stats", (ev) => showStats(ev.detail));
  p.addEventListener("job", (ev) => showJob(ev.detail));
  p.addEventListener("unreachable", (ev) => {
    log(ev.detail.message);
    showCORSHelp(true);
  });
  if (ui.manualPause) p.pause("manual", "paused by its owner");
  if ($("hide-pause").checked && document.hidden) p.pause("hidden", "the owner's browser tab is hidden");
  if (ui.provider) showStats(ui.provider.snapshot()); // totals restart with each start
  ui.provider = p;
  p.start();
  updateControls();
}

function togglePause() {
  ui.manualPause = !ui.manualPause;
  if (ui.provider) {
    if (ui.manualPause) ui.provider.pause("manual", "paused by its owner");
    else ui.provider.resume("manual");
  }
  log(ui.manualPause ? "Paused: the gateway sends no new jobs; running ones finish." : "Resumed.");
  updateControls();
}

function onVisibility() {
  const p = ui.provider;
  if (!p || !$("hide-pause").checked) return;
  if (document.hidden) p.pause("hidden", "the owner's browser tab is hidden");
  else p.resume("hidden");
}

async function downloadKey() {
  const text = await keystore.exportKeyFile(ui.id);
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([text], { type: "application/json" }));
  a.download = `idlegrid-provider-${ui.id.address.slice(0, 11)}.key`;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  log("Key file downloaded: keep it private (chmod 600 before idlegrid uses it).");
}

async function importKey(ev) {
  const file = ev.target.files[0];
  ev.target.value = "";
  if (!file) return;
  try {
    const id = await keystore.importKeyFile(await file.text());
    await keystore.save(id);
    ui.id = id;
    showKey();
    log(`Imported the key of ${id.address}.`);
  } catch (err) {
    log(`Import failed: ${err.message}`);
  }
  updateControls();
}

async function newKey() {
  if (!confirm("Replace this browser's provider key? Download the current one first if it has earnings.")) return;
  ui.id = await keystore.generate();
  await keystore.save(ui.id);
  showKey();
  log(`New key ${ui.id.address}.`);
}

async function main() {
  if (rememberServer()) return;
  showCORSHelp(false);
  $("hide-pause").checked = localStorage.getItem("idlegrid.hidePause") === "1";
  $("hide-pause").addEventListener("change", () => {
    localStorage.setItem("idlegrid.hidePause", $("hide-pause").checked ? "1" : "0");
    if (!$("hide-pause").checked && ui.provider) ui.provider.resume("hidden");
    else onVisibility();
  });
  document.addEventListener("visibilitychange", onVisibility);
  $("start").addEventListener("click", () => {
    if (ui.provider && !ui.provider.stopped) ui.provider.stop();
    else start();
    updateControls();
  });
  $("pause").addEventListener("click", togglePause);
  $("reload-models").addEventListener("click", loadModels);
  $("download-key").addEventListener("click", () => downloadKey().catch((err) => log(err.message)));
  $("key-file").addEventListener("change", importKey);
  $("new-key").addEventListener("click", () => newKey().then(updateControls, (err) => log(err.message)));
  try {
    const { id, created } = await keystore.loadOrCreate();
    ui.id = id;
    showKey();
    log(created ? `Created a provider key for ${id.address}.` : `Loaded the provider key of ${id.address}.`);
  } catch (err) {
    $("address").textContent = `This browser cannot make an Ed25519 key: ${err.message}`;
    log(err.message);
  }
  await loadModels();
  // Settlement runs in batches: the ledger's view is read every few seconds.
  setInterval(showLedger, 3000);
  document.body.dataset.ready = "1";
}

main();
