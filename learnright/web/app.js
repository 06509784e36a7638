// The holder page: no build step. The token lives in sessionStorage of this tab only and
// goes to the API as a Bearer header; downloads are fetched with it and saved as blobs.
"use strict";

const COLORS = ["#3367d6", "#e8710a", "#1e8e3e", "#9334e6", "#d93025", "#12a4af", "#f9ab00"];
const $ = (id) => document.getElementById(id);

function token() { return sessionStorage.getItem("learnright.token"); }

async function api(path) {
  const response = await fetch(path, { headers: { Authorization: "Bearer " + token() } });
  if (!response.ok) {
    let message = response.status + " " + response.statusText;
    try { message = (await response.json()).message || message; } catch (e) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

function showError(message) { $("error").textContent = message; $("error").hidden = !message; }

function cell(row, text, numeric) {
  const td = row.insertCell();
  td.textContent = text;
  if (numeric) td.className = "num";
  return td;
}

function trim(amount) { return amount.includes(".") ? amount.replace(/0+$/, "").replace(/\.$/, "") : amount; }

async function download(statement, format) {
  try {
    const response = await api(statement.downloads[format]);
    const blob = await response.blob();
    const disposition = response.headers.get("Content-Disposition") || "";
    const match = /filename="([^"]+)"/.exec(disposition);
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = match ? match[1] : statement.statement_id + "." + format;
    document.body.appendChild(link);
    link.click();
    setTimeout(() => { URL.revokeObjectURL(link.href); link.remove(); }, 1000);
  } catch (error) { showError(format.toUpperCase() + ": " + error.message); }
}

// -- signatures, checked here with WebCrypto ------------------------------------------------
// What is signed (docs/statements.md, ledger/core/envelope.py): the RFC 8785 (JCS) canonical
// JSON of the envelope's "statement" member. A statement holds only strings, integers,
// booleans, arrays and objects with ASCII keys, so JCS is JSON.stringify of each string and
// integer with the object keys sorted and no whitespace.

class Unchecked extends Error {}  // the check could not run (no key, no WebCrypto), as opposed to failing

function canonical(value) {
  if (value === null || typeof value === "boolean" || typeof value === "string") return JSON.stringify(value);
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value)) throw new Unchecked(`number ${value} cannot be checked exactly in a browser`);
    return String(value);
  }
  if (Array.isArray(value)) return "[" + value.map(canonical).join(",") + "]";
  return "{" + Object.keys(value).sort().map((k) => JSON.stringify(k) + ":" + canonical(value[k])).join(",") + "}";
}

const hex = (buffer) => [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, "0")).join("");
const base64Bytes = (text) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0));

let publishedKey = null;  // a promise of {key, fingerprint}, fetched once per page load

// The published key (PEM, SubjectPublicKeyInfo) and its fingerprint, computed as the ledger
// does: "sha256:" + hex SHA-256 of the 32 raw public key bytes.
async function loadPublishedKey() {
  if (!window.crypto || !crypto.subtle) throw new Unchecked("this page needs HTTPS (or localhost) to use WebCrypto");
  const response = await fetch("/v1/signing-key");
  if (!response.ok) throw new Unchecked("the service publishes no signing key");
  const pem = await response.text();
  const der = base64Bytes(pem.replace(/-----(BEGIN|END) PUBLIC KEY-----/g, "").replace(/\s+/g, ""));
  let key;
  try {
    key = await crypto.subtle.importKey("spki", der, { name: "Ed25519" }, true, ["verify"]);
  } catch (error) { throw new Unchecked("the published key is not an Ed25519 key this browser can use: " + error.message); }
  const raw = await crypto.subtle.exportKey("raw", key);
  return { key, fingerprint: "sha256:" + hex(await crypto.subtle.digest("SHA-256", raw)) };
}

// Checks one signed statement file (envelope 1 or 2). Returns nothing when it verifies;
// throws Error saying what does not match (FAILED), or Unchecked when it could not check.
async function checkStatement(text, published) {
  let envelope;
  try { envelope = JSON.parse(text); } catch (error) { throw new Error("the file is not JSON: " + error.message); }
  const repeated = { 1: "chain_head", 2: "close_root" }[envelope.envelope_version];
  if (!repeated) throw new Error(`envelope_version ${envelope.envelope_version} is not 1 or 2`);
  const statement = envelope.statement;
  if (!statement || typeof statement !== "object" || Array.isArray(statement)) throw new Error("no statement member");
  const signed = new TextEncoder().encode(canonical(statement));
  const digest = hex(await crypto.subtle.digest("SHA-256", signed));
  if (envelope.content_hash !== digest) throw new Error(`content hash ${envelope.content_hash} does not match the statement (${digest})`);
  for (const [member, inside] of [["format_version", statement.format_version], ["statement_id", statement.statement_id],
                                  [repeated, (statement.ledger || {})[repeated]]]) {
    if (envelope[member] !== inside) throw new Error(`${member} ${envelope[member]} differs from the signed statement's ${inside}`);
  }
  const signature = envelope.signature || {};
  if (signature.algorithm !== "Ed25519") throw new Error(`signature algorithm ${signature.algorithm} is not Ed25519`);
  if (signature.key_fingerprint !== published.fingerprint) {
    throw new Error(`signed with key ${signature.key_fingerprint}, not the published key ${published.fingerprint}`);
  }
  let value;
  try { value = base64Bytes(signature.value); } catch (error) { throw new Error("the signature is not base64"); }
  if (!(await crypto.subtle.verify({ name: "Ed25519" }, published.key, value, signed))) {
    throw new Error("the signature does not match the statement: it was changed after it was signed");
  }
}

async function showSignature(statement, td) {
  let state, note = "";
  try {
    const published = await publishedKey;
    let text;
    try { text = await (await api(statement.downloads.json)).text(); }
    catch (error) { throw new Unchecked("the signed file could not be fetched: " + error.message); }
    await checkStatement(text, published);
    state = "verified";
  } catch (error) {
    state = error instanceof Unchecked ? "unchecked" : "failed";  // anything else that went wrong: not verified
    note = error.message;
  }
  td.className = "signature " + state;
  td.dataset.signature = state;
  td.replaceChildren({ verified: "signature verified", failed: "signature FAILED", unchecked: "not checked" }[state]);
  if (note) { const small = document.createElement("small"); small.textContent = note; td.appendChild(small); }
}

function renderStatements(statements) {
  const body = $("statements").tBodies[0];
  body.replaceChildren();
  for (const s of statements) {
    const row = body.insertRow();
    row.dataset.statementId = s.statement_id;
    cell(row, s.period); cell(row, s.currency);
    cell(row, trim(s.accrued), true); cell(row, trim(s.payable), true); cell(row, trim(s.carry_out), true);
    const links = row.insertCell();
    for (const format of ["json", "csv", "pdf"]) {
      const a = document.createElement("a");
      a.href = "#"; a.textContent = format.toUpperCase(); a.className = "download-" + format;
      a.addEventListener("click", (event) => { event.preventDefault(); download(s, format); });
      links.appendChild(a);
    }
    const signature = row.insertCell();
    signature.className = "signature"; signature.textContent = "checking…";
    showSignature(s, signature);
  }
}

// Months after the last close: provisional sums, never signed (GET /v1/royalties/open).
function renderOpen(open, auditor) {
  const body = $("open").tBodies[0];
  body.replaceChildren();
  for (const month of open.months) {
    for (const s of month.sources) {
      const row = body.insertRow();
      row.className = "provisional";
      row.dataset.period = month.period; row.dataset.source = s.source_id; row.dataset.amount = s.amount;
      cell(row, month.period + " (open)");
      cell(row, auditor ? `${s.holder_id} / ${s.source_id}` : s.source_id);
      cell(row, s.currency);
      cell(row, s.quantities.map((q) => `${trim(q.quantity)} ${q.unit} (${q.kind})`).join(", "));
      cell(row, trim(s.amount), true);
    }
  }
  const cut = open.cut;
  $("open-cut").textContent = `As booked up to entry ${cut.last_entry_id}` +
    (cut.last_batch_at ? `, last batch at ${cut.last_batch_at}` : "") +
    (open.after_period ? `; last closed month ${open.after_period}.` : "; no month closed yet.");
  $("open-none").hidden = open.months.length > 0;
  $("open-months").hidden = false;
}

async function loadOpen(auditor) {
  try { renderOpen(await (await api("/v1/royalties/open")).json(), auditor); }
  catch (error) { showError("Open months: " + error.message); }
}

async function showKey() {
  try { $("key-fingerprint").textContent = (await publishedKey).fingerprint; }
  catch (error) { $("key-fingerprint").textContent = "unavailable (" + error.message + ")"; }
}

// One stacked bar chart per currency: months on x, one colour per source.
function renderChart(royalties) {
  const chart = $("chart");
  chart.replaceChildren();
  const byCurrency = {};
  for (const r of royalties) (byCurrency[r.currency] ||= []).push(r);
  for (const [currency, rows] of Object.entries(byCurrency)) {
    const periods = [...new Set(rows.map((r) => r.period))].sort();
    const sources = [...new Set(rows.map((r) => r.source_id))].sort();
    const totals = periods.map((p) => rows.filter((r) => r.period === p).reduce((t, r) => t + Math.max(Number(r.amount), 0), 0));
    const max = Math.max(...totals, 1e-9);
    const width = 560, height = 200, left = 60, bottom = 24, bar = Math.min(60, (width - left) / periods.length - 12);
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", `0 0 ${width} ${height + bottom + 10}`);
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", `Monthly royalties in ${currency} by source`);
    svg.classList.add("royalty-chart");
    svg.dataset.currency = currency;
    const text = (x, y, content, anchor) => {
      const t = document.createElementNS(ns, "text");
      t.setAttribute("x", x); t.setAttribute("y", y); t.setAttribute("font-size", "11");
      t.setAttribute("text-anchor", anchor || "middle"); t.textContent = content; svg.appendChild(t);
    };
    text(left - 6, 14, `${trim(max.toFixed(2))} ${currency}`, "end");
    text(left - 6, height, `0 ${currency}`, "end");
    periods.forEach((period, i) => {
      const x = left + 6 + i * ((width - left) / periods.length);
      let y = height;
      for (const [k, source] of sources.entries()) {
        const row = rows.find((r) => r.period === period && r.source_id === source);
        if (!row || Number(row.amount) <= 0) continue;
        const h = (Number(row.amount) / max) * (height - 20);
        const rect = document.createElementNS(ns, "rect");
        rect.setAttribute("x", x); rect.setAttribute("y", y - h); rect.setAttribute("width", bar); rect.setAttribute("height", h);
        rect.setAttribute("fill", COLORS[k % COLORS.length]);
        rect.dataset.period = period; rect.dataset.source = source; rect.dataset.amount = row.amount;
        const title = document.createElementNS(ns, "title");
        title.textContent = `${period} ${source}: ${trim(row.amount)} ${currency}`;
        rect.appendChild(title); svg.appendChild(rect);
        y -= h;
      }
      text(x + bar / 2, height + 16, period);
    });
    const legend = document.createElement("div");
    legend.className = "legend";
    sources.forEach((source, k) => {
      const item = document.createElement("span");
      const swatch = document.createElement("i"); swatch.style.background = COLORS[k % COLORS.length];
      item.append(swatch, source); legend.appendChild(item);
    });
    const figure = document.createElement("figure");
    const caption = document.createElement("figcaption"); caption.textContent = currency;
    figure.append(caption, svg, legend);
    chart.appendChild(figure);
  }
}

async function load() {
  showError("");
  if (!token()) { $("signin").hidden = false; $("dashboard").hidden = true; return; }
  try {
    const me = await (await api("/v1/me")).json();
    const [statements, royalties] = await Promise.all([
      api("/v1/statements").then((r) => r.json()), api("/v1/royalties/monthly").then((r) => r.json())]);
    $("who").textContent = me.role === "auditor" ? "Auditor: every holder" : `Statements of ${me.holder_id}`;
    publishedKey = loadPublishedKey();
    publishedKey.catch(() => {});  // each row and the key line report it
    showKey();
    renderStatements(statements.statements);
    loadOpen(me.role === "auditor");
    renderChart(royalties.royalties);
    $("signin").hidden = true; $("dashboard").hidden = false;
  } catch (error) {
    sessionStorage.removeItem("learnright.token");
    $("signin").hidden = false; $("dashboard").hidden = true;
    showError(error.message);
  }
}

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem("learnright.token", $("token").value.trim());
  $("token").value = "";
  load();
});
$("signout").addEventListener("click", () => { sessionStorage.removeItem("learnright.token"); load(); });
// A link may carry the token in its fragment (#token=...): never sent to the server, removed at once.
if (location.hash.startsWith("#token=")) {
  sessionStorage.setItem("learnright.token", decodeURIComponent(location.hash.slice(7)));
  history.replaceState(null, "", location.pathname);
}
load();
