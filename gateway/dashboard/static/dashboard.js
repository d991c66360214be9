// The usage dashboard: asks for a token, reads the gateway's usage, limits and keys endpoints with it, draws
// the charts and the limits table. The token lives in this tab's sessionStorage only; no framework, DOM APIs only.
"use strict";

(() => {
  const TOKEN_KEY = "gateway.dashboard.token";
  const COLORS = ["#3366cc", "#dc3912", "#ff9900", "#109618", "#990099", "#0099c6", "#dd4477", "#66aa00", "#b82e2e", "#316395"];
  const charts = new Map(); // canvas id -> Chart
  const $ = (id) => document.getElementById(id);

  /** A failed call: `message` is what the user reads (the problem's title and detail), `status` the HTTP status. */
  class ApiError extends Error {
    constructor(message, status) {
      super(message);
      this.status = status;
    }
  }

  const token = () => sessionStorage.getItem(TOKEN_KEY) || "";
  const isTenantKey = (value) => value.startsWith("gwk_");

  /** The endpoints the token may read: a tenant key its own usage and limits, the admin token everything. */
  function endpoints() {
    return isTenantKey(token())
      ? { usage: "v1/usage", limits: "v1/limits", keys: null }
      : { usage: "admin/v1/usage", limits: "admin/v1/limits", keys: "admin/v1/keys" };
  }

  /** GET a JSON endpoint (a path relative to the gateway's root) with the token; problems become ApiErrors. */
  async function call(path, params) {
    const url = new URL(path, document.baseURI);
    for (const [name, value] of Object.entries(params)) {
      if (value) url.searchParams.set(name, value);
    }
    let response;
    try {
      response = await fetch(url, { headers: { Authorization: `Bearer ${token()}`, Accept: "application/json" }, cache: "no-store" });
    } catch (error) {
      throw new ApiError(`The gateway did not answer (${error.message})`, 0);
    }
    const body = await response.json().catch(() => null);
    if (!response.ok) throw new ApiError(describeProblem(response.status, body), response.status);
    return body;
  }

  function describeProblem(status, problem) {
    const text = problem ? [problem.title, problem.detail].filter(Boolean).join(": ") : "";
    return `${text || "The gateway refused the request"} (HTTP ${status})`;
  }

  /** The query of the filter form: an ISO 8601 range of whole UTC days, and a tenant for the admin. */
  function filters() {
    const since = $("since").value;
    const until = $("until").value;
    const end = until ? new Date(`${until}T00:00:00Z`) : null;
    if (end) end.setUTCDate(end.getUTCDate() + 1); // the "to" day is included
    return {
      since: since ? `${since}T00:00:00Z` : "",
      until: end ? end.toISOString().replace(".000Z", "Z") : "",
      tenant: isTenantKey(token()) ? "" : $("tenant").value.trim(),
    };
  }

  async function load() {
    const api = endpoints();
    const range = filters();
    const bucket = $("bucket").value;
    const [byKey, byModel, overall, limits, keys] = await Promise.all([
      call(api.usage, { ...range, group_by: `${bucket},key` }),
      call(api.usage, { ...range, group_by: `${bucket},model` }),
      call(api.usage, { ...range, group_by: bucket }),
      call(api.limits, { tenant: range.tenant }),
      api.keys ? call(api.keys, { tenant: range.tenant }) : Promise.resolve({ results: [] }),
    ]);
    showWho(limits.results);
    showTotals(overall.totals, overall.currency);
    drawCharts(byKey, byModel, overall, keys.results, bucket);
    showLimits(keys.results, limits.results, overall.currency);
  }

  /** The four charts over the periods any of the answers has (a prediction may finish between the calls). */
  function drawCharts(byKey, byModel, overall, keys, bucket) {
    const answers = [byKey, byModel, overall];
    const periods = [...new Set(answers.flatMap((answer) => answer.results.map((row) => row.period)))].sort();
    const labels = periods.map((period) => periodLabel(period, bucket));
    const names = new Map(keys.map((key) => [key.key_id, key.name]));
    const keyLabel = (row) => (names.get(row.key_id) ? `${names.get(row.key_id)} (${row.key_id})` : row.key_id);
    draw("chart-keys", "bar", labels, breakdown(byKey.results, periods, keyLabel));
    draw("chart-models", "bar", labels, breakdown(byModel.results, periods, (row) => row.model));
    const inPeriod = new Map(overall.results.map((row) => [row.period, row]));
    const perPeriod = (value) => periods.map((period) => (inPeriod.has(period) ? value(inPeriod.get(period)) : 0));
    draw("chart-spend", "line", labels, [line(`Spend (${overall.currency})`, perPeriod((row) => Number(row.cost)), 0)]);
    draw("chart-errors", "line", labels, [line("Error rate (%)", perPeriod(errorPercent), 1)]);
  }

  function periodLabel(period, bucket) {
    return bucket === "hour" ? period.slice(0, 16).replace("T", " ") : period.slice(0, 10);
  }

  /** One stacked dataset per name (a key, a model): its predictions in each period, 0 where it had none. */
  function breakdown(rows, periods, nameOf) {
    const counts = new Map();
    for (const row of rows) {
      const name = nameOf(row) || "(none)";
      if (!counts.has(name)) counts.set(name, periods.map(() => 0));
      counts.get(name)[periods.indexOf(row.period)] += row.predictions;
    }
    return [...counts.keys()].sort().map((name, index) => ({
      label: name,
      data: counts.get(name),
      backgroundColor: COLORS[index % COLORS.length],
      stack: "predictions",
    }));
  }

  function line(label, data, colorIndex) {
    return { label, data, borderColor: COLORS[colorIndex], backgroundColor: COLORS[colorIndex], tension: 0.2 };
  }

  function errorPercent(counts) {
    return counts.predictions ? (100 * counts.failed) / counts.predictions : 0;
  }

  function draw(canvasId, type, labels, datasets) {
    charts.get(canvasId)?.destroy();
    const stacked = type === "bar";
    charts.set(
      canvasId,
      new Chart($(canvasId), {
        type,
        data: { labels, datasets },
        options: {
          animation: false,
          maintainAspectRatio: false,
          scales: { x: { stacked }, y: { stacked, beginAtZero: true } },
          plugins: { legend: { position: "bottom" } },
        },
      }),
    );
  }

  function showWho(limitRows) {
    const value = token();
    if (!isTenantKey(value)) {
      $("who").textContent = "Admin: all tenants";
      return;
    }
    const tenant = limitRows.length ? limitRows[0].tenant : "";
    $("who").textContent = `Tenant ${tenant} · key ${value.split("_")[1] || ""}`;
  }

  function showTotals(totals, currency) {
    $("total-predictions").textContent = String(totals.predictions);
    $("total-succeeded").textContent = String(totals.succeeded);
    $("total-failed").textContent = String(totals.failed);
    $("total-canceled").textContent = String(totals.canceled);
    $("total-error-rate").textContent = `${errorPercent(totals).toFixed(1)} %`;
    $("total-cost").textContent = money(totals.cost, currency);
    $("total-predict-time").textContent = `${totals.predict_time.toFixed(1)} s`;
  }

  /** An exact decimal string shown with at least two decimals and no trailing zeros beyond: "0.030000000" -> "0.03 USD". */
  function money(amount, currency) {
    if (amount === null || amount === undefined) return "–";
    const [whole, fraction = ""] = amount.split(".");
    return `${whole}.${fraction.replace(/0+$/, "").padEnd(2, "0")} ${currency}`;
  }

  /** The limits table: every listed key with its key-scope limits, then the limits of other scopes (tenants). */
  function showLimits(keys, limitRows, currency) {
    const byScope = new Map(limitRows.map((row) => [`${row.scope}:${row.id}`, row]));
    const rows = keys.map((key) => ({ key, limit: byScope.get(`key:${key.key_id}`) }));
    const listed = new Set(keys.map((key) => `key:${key.key_id}`));
    for (const limit of limitRows) {
      if (!listed.has(`${limit.scope}:${limit.id}`)) rows.push({ key: null, limit });
    }
    const body = $("limits").tBodies[0];
    body.replaceChildren(...rows.map(({ key, limit }) => limitRow(key, limit, currency)));
    $("limits-empty").hidden = rows.length > 0;
    $("limits-title").textContent = endpoints().keys ? "Keys and limits" : "Limits";
  }

  function limitRow(key, limit, currency) {
    const rules = limit?.limits;
    const state = limit?.state;
    const cells = [
      limit ? limit.scope : "key",
      key ? key.key_id : limit.id,
      key ? key.tenant : limit.tenant,
      key?.name || "",
      key ? (key.disabled ? "disabled" : "active") : "",
      rules?.creates_per_minute ?? "–",
      rules ? `${state.concurrent} of ${rules.concurrent_predictions ?? "∞"}` : "–",
      budgetText(rules, state, currency),
      state?.spent ? money(state.spent, currency) : "–",
      remainingText(limit, currency),
      state?.period_resets_at || "–",
    ];
    const row = document.createElement("tr");
    row.dataset.scope = limit ? limit.scope : "key";
    row.dataset.id = key ? key.key_id : limit.id;
    for (const value of cells) {
      const cell = document.createElement("td");
      cell.textContent = String(value);
      row.append(cell);
    }
    if (state?.remaining && Number(state.remaining) <= 0) row.cells[9].classList.add("over");
    return row;
  }

  function remainingText(limit, currency) {
    if (!limit) return "–";
    return limit.state.remaining === null ? "unlimited" : money(limit.state.remaining, currency);
  }

  function budgetText(rules, state, currency) {
    if (!rules) return "–";
    if (rules.prepaid) return `prepaid, balance ${money(state.balance, currency)}`;
    if (!rules.budget) return "none";
    return `${money(rules.budget.amount, currency)} per ${rules.budget.period}`;
  }

  function showError(message) {
    $("error").textContent = message;
    $("error").hidden = !message;
  }

  function showBoard(open) {
    $("login").hidden = open;
    $("board").hidden = !open;
    $("logout").hidden = !open;
    $("tenant-filter").hidden = isTenantKey(token());
    if (!open) $("who").textContent = "";
  }

  /** Reload everything; `body[data-state]` says "loading", then "ready" or "error" (what tests wait for). */
  async function refresh() {
    showError("");
    document.body.dataset.state = "loading";
    try {
      await load();
      document.body.dataset.state = "ready";
    } catch (error) {
      document.body.dataset.state = "error";
      showError(error instanceof ApiError ? error.message : `The dashboard failed: ${error.message}`);
      if (error.status === 401 || error.status === 403) logOut();
    }
  }

  function logOut() {
    sessionStorage.removeItem(TOKEN_KEY);
    showBoard(false);
  }

  function defaultRange() {
    const today = new Date();
    const start = new Date(today);
    start.setUTCDate(start.getUTCDate() - 29);
    $("since").value = start.toISOString().slice(0, 10);
    $("until").value = today.toISOString().slice(0, 10);
  }

  function start() {
    defaultRange();
    $("login").addEventListener("submit", (event) => {
      event.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
      $("token").value = "";
      showBoard(true);
      refresh();
    });
    $("filters").addEventListener("submit", (event) => {
      event.preventDefault();
      refresh();
    });
    $("logout").addEventListener("click", () => {
      showError("");
      logOut();
    });
    showBoard(Boolean(token()));
    if (token()) refresh();
  }

  start();
})();
