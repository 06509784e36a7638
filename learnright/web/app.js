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
  }
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
    renderStatements(statements.statements);
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
