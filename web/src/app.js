// The dashboard's scripts. Pages are rendered on the server; this file draws their charts
// (ECharts, SVG renderer) and runs the few interactive parts: buttons that call the API,
// the segment builder, the import mapping and job progress.
import * as echarts from "echarts/core";
import {
  BarChart,
  FunnelChart,
  HeatmapChart,
  LineChart,
  PieChart,
  SankeyChart,
  TreemapChart,
} from "echarts/charts";
import {
  GridComponent,
  LegendComponent,
  TitleComponent,
  TooltipComponent,
  VisualMapComponent,
} from "echarts/components";
import { SVGRenderer } from "echarts/renderers";

echarts.use([
  BarChart, FunnelChart, HeatmapChart, LineChart, PieChart, SankeyChart, TreemapChart,
  GridComponent, LegendComponent, TitleComponent, TooltipComponent, VisualMapComponent,
  SVGRenderer,
]);

const $ = (selector, root = document) => root.querySelector(selector);
const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));
const csrf = () => $('meta[name="csrf-token"]')?.content || "";
const word = (key) => (window.TIERWISE_WORDS || {})[key] || key;

function readJson(id) {
  const node = document.getElementById(id);
  return node ? JSON.parse(node.textContent) : null;
}

// -- charts --------------------------------------------------------------------------------

function drawCharts() {
  const charts = [];
  for (const el of $$("[data-chart]")) {
    const option = readJson(el.dataset.chart);
    if (!option) continue;
    const chart = echarts.init(el, null, { renderer: "svg" });
    chart.setOption(option);
    // data-links: the page behind each bar (by its index), e.g. the customers of a group
    const links = el.dataset.links ? readJson(el.dataset.links) : null;
    if (links) {
      chart.on("click", (params) => {
        if (params.dataType === "node") return; // a Sankey's links are its flows
        // a treemap item names its own position; other charts count by data index
        const index = params.data && Number.isInteger(params.data.index)
          ? params.data.index : params.dataIndex;
        const target = links[index];
        if (target) window.location.href = target;
      });
      chart.getZr().setCursorStyle("pointer");
    }
    charts.push(chart);
  }
  let pending = null;
  window.addEventListener("resize", () => {
    clearTimeout(pending);
    pending = setTimeout(() => charts.forEach((c) => c.resize()), 150);
  });
}

// -- talking to the API --------------------------------------------------------------------

async function api(method, url, body, isForm = false) {
  const headers = { "X-CSRF-Token": csrf(), Accept: "application/json" };
  let payload = body;
  if (body !== undefined && !isForm) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const response = await fetch(url, { method, headers, body: payload, credentials: "same-origin" });
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { detail: text };
  }
  if (!response.ok) {
    const error = new Error((data && (data.detail || data.title)) || response.statusText);
    error.problem = data;
    error.status = response.status;
    throw error;
  }
  return data;
}

function flash(message, kind = "error") {
  const box = $("#flash");
  if (!box) return;
  box.textContent = message;
  box.className = `flash ${kind}`;
  box.hidden = false;
}

function wireButtons() {
  for (const button of $$("button[data-post]")) {
    button.addEventListener("click", async () => {
      if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
      button.disabled = true;
      try {
        const body = button.dataset.body ? JSON.parse(button.dataset.body) : {};
        // data-input: a field of the body comes from an input beside the button
        if (button.dataset.input) {
          body[button.dataset.field || "value"] = $(button.dataset.input).value.trim();
        }
        const result = await api("POST", button.dataset.post, body);
        if (result && result.job_id) {
          await followJob(result.job_id, $(button.dataset.progress || "#job-progress"));
        }
        window.location.reload();
      } catch (error) {
        flash(error.message);
        button.disabled = false;
      }
    });
  }
}

// -- jobs (imports, compute): progress as the CLI shows it --------------------------------

async function followJob(jobId, box) {
  if (box) box.hidden = false;
  for (;;) {
    const job = await api("GET", `/v1/jobs/${jobId}`);
    if (box) {
      const bar = $("progress", box);
      const label = $(".job-label", box);
      const rows = job.progress || 0;
      if (bar) {
        if (job.status === "done") {
          bar.max = 1;
          bar.value = 1;
        } else {
          bar.removeAttribute("value");
        }
      }
      if (label) {
        label.textContent = `${word(job.status)} · ${rows.toLocaleString()} ${word("rows")}` +
          (job.error ? ` · ${job.error}` : "");
      }
    }
    if (job.status === "done" || job.status === "failed") return job;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

function wireJobLinks() {
  for (const box of $$("[data-job]")) {
    followJob(box.dataset.job, box).then((job) => {
      if (box.dataset.reload) window.location.reload();
      return job;
    }).catch((error) => flash(error.message));
  }
}

// -- the segment builder: rows of conditions kept in step with the text --------------------

function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

function problemText(error) {
  const problem = error.problem || {};
  const where = (problem.errors || []).map((e) => [e.location, e.message].filter(Boolean).join(": "));
  return [problem.detail || error.message, ...where].filter(Boolean).join("\n");
}

function wireBuilder() {
  const form = $("#segment-form");
  if (!form) return;
  const text = $("#rule", form);
  const rowsBox = $("#conditions", form);
  const template = $("#condition-row");
  const join = $("#join", form);
  const count = $("#live-count");
  const errors = $("#rule-errors");
  const warnings = $("#rule-warnings");
  const visualNote = $("#visual-note");
  let syncing = false;

  const quoteIfNeeded = (value) => {
    const v = value.trim();
    if (v === "" || /^-?\d+(\.\d+)?$/.test(v) || /^'.*'$/.test(v) || /^-\d+[dwmy]$/.test(v) || v === "today") return v;
    if (v.includes(",") || / AND /i.test(v)) return v; // lists and BETWEEN bounds are typed whole
    return `'${v.replace(/'/g, "''")}'`;
  };

  function rowText(row) {
    const left = $(".c-left", row).value.trim();
    const op = $(".c-op", row).value;
    const value = $(".c-value", row).value;
    if (!left) return "";
    if (left === "IN_SEGMENT" || left === "NOT IN_SEGMENT") return `${left}(${quoteIfNeeded(value)})`;
    if (op === "IS NULL" || op === "IS NOT NULL") return `${left} ${op}`;
    if (op === "IN" || op === "NOT IN") {
      const items = value.split(",").map((v) => quoteIfNeeded(v)).filter(Boolean);
      return `${left} ${op} (${items.join(", ")})`;
    }
    return `${left} ${op} ${quoteIfNeeded(value)}`;
  }

  function addRow(values = { left: "", op: "=", value: "" }) {
    const row = template.content.firstElementChild.cloneNode(true);
    $(".c-left", row).value = values.left;
    $(".c-op", row).value = values.op || "=";
    $(".c-value", row).value = values.value;
    $(".c-remove", row).addEventListener("click", () => {
      row.remove();
      fromRows();
    });
    for (const input of $$("input, select", row)) input.addEventListener("input", fromRows);
    rowsBox.appendChild(row);
    return row;
  }

  function fromRows() {
    if (syncing) return;
    const parts = $$(".condition", rowsBox).map(rowText).filter(Boolean);
    text.value = parts.join(` ${join.value} `);
    refresh();
  }

  async function fromText() {
    if (!text.value.trim()) {
      errors.textContent = "";
      count.textContent = "";
      return;
    }
    try {
      const checked = await api("POST", "/v1/segments/check", { rule: text.value });
      errors.textContent = "";
      text.removeAttribute("aria-invalid");
      syncing = true;
      rowsBox.replaceChildren();
      if (checked.conditions) {
        join.value = checked.conditions.join;
        checked.conditions.rows.forEach((row) => addRow(row));
        visualNote.hidden = true;
      } else {
        visualNote.hidden = false;
      }
      syncing = false;
      await countNow();
    } catch (error) {
      syncing = false;
      errors.textContent = problemText(error);
      text.setAttribute("aria-invalid", "true");
      count.textContent = "";
    }
  }

  async function countNow() {
    if (!text.value.trim()) return;
    count.textContent = word("counting");
    try {
      const found = await api("POST", "/v1/segments/preview", { rule: text.value, sample: 5 });
      errors.textContent = "";
      count.textContent = `${found.count.toLocaleString()} / ${found.customers.toLocaleString()} ${word("customers")}`;
      // free-text values no customer has: the rule is valid but probably not meant
      warnings.textContent = (found.warnings || []).join("\n");
    } catch (error) {
      errors.textContent = problemText(error);
      warnings.textContent = "";
      count.textContent = "";
    }
  }

  const refresh = debounce(countNow, 400);
  text.addEventListener("input", debounce(fromText, 500));
  join.addEventListener("change", fromRows);
  $("#add-condition").addEventListener("click", () => {
    addRow();
    $(".condition:last-child .c-left", rowsBox).focus();
  });

  async function save(dryRun) {
    const key = $("#key", form).value.trim();
    // Editing keeps what the form does not show (owner, tags, status) from the applied
    // definition; the rule is taken as text.
    const existing = readJson("definition") || {};
    delete existing.rule_json;
    const body = {
      ...existing,
      key,
      names: { ...(existing.names || {}), "zh-CN": $("#name-zh", form).value, en: $("#name-en", form).value },
      description: $("#description", form).value,
      rule: text.value,
    };
    const plan = $("#plan");
    try {
      const url = `/v1/segments/${encodeURIComponent(key)}?dry_run=${dryRun}&evaluate=${!dryRun}`;
      const result = await api("PUT", url, body);
      const p = result.plan;
      plan.hidden = false;
      $(".plan-change", plan).textContent = word(p.change);
      $(".plan-entering", plan).textContent = p.entering_count.toLocaleString();
      $(".plan-leaving", plan).textContent = p.leaving_count.toLocaleString();
      if (result.applied) window.location.href = `/segments/${encodeURIComponent(key)}`;
    } catch (error) {
      errors.textContent = problemText(error);
    }
  }

  $("#plan-button").addEventListener("click", () => save(true));
  $("#save-button").addEventListener("click", () => save(false));
  form.addEventListener("submit", (event) => event.preventDefault());
  if (text.value.trim()) fromText();
  else addRow();
}

// -- imports: upload, map columns with a preview, follow the job ---------------------------

function wireImport() {
  const form = $("#import-form");
  if (!form) return;
  const mappingBox = $("#mapping");
  const previewBox = $("#preview");
  const fileInput = $("#file", form);
  const tableSelect = $("#table", form);

  // The server holds the file it inspected: a second inspection (another table) and the
  // import name it by its upload id, so the file is sent once. A held file expires; then
  // the file goes again.
  let held = null;

  // post(upload) sends the form with the held file's id, or with the file when upload is
  // null: the id first while one is held, the file when none is or the held one is gone.
  async function sendOnce(post) {
    if (held) {
      try {
        return await post(held);
      } catch (error) {
        if (error.status !== 404) throw error;
        held = null; // it had expired
      }
    }
    return post(null);
  }

  function uploadForm(upload) {
    const data = new FormData();
    if (upload) data.append("upload_id", upload);
    else data.append("file", fileInput.files[0]);
    return data;
  }

  async function inspect() {
    if (!fileInput.files.length) return;
    try {
      const found = await sendOnce((upload) => {
        const data = uploadForm(upload);
        data.append("table", tableSelect.value);
        return api("POST", "/dashboard/imports/inspect", data, true);
      });
      held = found.upload_id;
      renderMapping(found);
    } catch (error) {
      flash(error.message);
    }
  }

  function renderMapping(found) {
    mappingBox.replaceChildren();
    const targets = ["", ...found.fields];
    found.columns.forEach((column, index) => {
      const row = document.createElement("div");
      row.className = "map-row";
      const label = document.createElement("label");
      label.htmlFor = `map-${index}`;
      label.textContent = column;
      const select = document.createElement("select");
      select.id = `map-${index}`;
      select.dataset.column = column;
      for (const target of targets) {
        const option = document.createElement("option");
        option.value = target;
        option.textContent = target || word("ignore");
        if (found.suggested[column] === target) option.selected = true;
        select.appendChild(option);
      }
      row.append(label, select);
      mappingBox.appendChild(row);
    });
    const table = document.createElement("table");
    const head = table.createTHead().insertRow();
    found.columns.forEach((c) => {
      const th = document.createElement("th");
      th.textContent = c;
      head.appendChild(th);
    });
    const body = table.createTBody();
    found.sample.forEach((values) => {
      const tr = body.insertRow();
      values.forEach((v) => {
        tr.insertCell().textContent = v ?? "";
      });
    });
    previewBox.replaceChildren(table);
    $("#import-button").disabled = false;
  }

  fileInput.addEventListener("change", () => {
    held = null;
    inspect();
  });
  tableSelect.addEventListener("change", inspect);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    // A mapping sends each source column to a canonical one, or to "ignore".
    const lines = ["columns:", ...$$("select[data-column]", mappingBox).map((select) =>
      `  ${JSON.stringify(select.dataset.column)}: ${select.value || "ignore"}`)];
    $("#import-button").disabled = true;
    try {
      const started = await sendOnce((upload) => {
        const data = uploadForm(upload);
        data.append("table", tableSelect.value);
        data.append("mapping", lines.join("\n"));
        data.append("unknown_customers", $("#unknown", form).value);
        data.append("dry_run", $("#dry-run", form).checked ? "true" : "false");
        return api("POST", "/v1/imports", data, true);
      });
      held = null; // the import took it
      await followJob(started.job_id, $("#job-progress"));
      window.location.href = `/imports?job=${started.job_id}`;
    } catch (error) {
      flash(error.message);
      $("#import-button").disabled = false;
    }
  });
}

// -- tier rules: plan before saving --------------------------------------------------------

function wireTierEditor() {
  const form = $("#tier-form");
  if (!form) return;
  const output = $("#tier-plan");
  const text = $("#tier-spec", form);
  const spec = () => JSON.parse(text.value);
  const method = $("#tier-method", form);
  const cuts = $("#tier-cuts", form);
  const weights = $$("input[data-weight]", form);

  // The fields and the JSON are one rule: a field edit rewrites the JSON, valid JSON
  // refills the fields.
  function fromFields() {
    let current;
    try {
      current = spec();
    } catch {
      return;
    }
    current.method = method.value;
    if (current.method === "rules" && !(current.rules || []).length) {
      // a starting point: absolute spend thresholds for the first two tiers
      const names = current.tiers || ["A", "B"];
      current.rules = [
        { tier: names[0], when: "SUM(orders.amount, LAST 12m) >= 50000" },
        { tier: names[1], when: "SUM(orders.amount, LAST 12m) >= 10000" },
      ];
    }
    if (current.method !== "rules") delete current.rules;
    current.cuts = cuts.value.split(",").map((v) => Number(v.trim())).filter((v) => !Number.isNaN(v));
    current.weights = {};
    for (const input of weights) {
      const value = Number(input.value);
      if (input.value !== "" && value > 0) current.weights[input.dataset.weight] = value;
    }
    text.value = JSON.stringify(current, null, 2);
  }

  function fromText() {
    let current;
    try {
      current = spec();
    } catch {
      return;
    }
    method.value = current.method || "pareto";
    cuts.value = (current.cuts || []).join(", ");
    for (const input of weights) input.value = (current.weights || {})[input.dataset.weight] ?? "";
  }

  for (const field of [method, cuts, ...weights]) field.addEventListener("input", fromFields);
  text.addEventListener("input", fromText);
  fromText();
  $("#tier-plan-button").addEventListener("click", async () => {
    try {
      const plan = await api("POST", "/v1/tiers/plan", spec());
      output.replaceChildren();
      const table = document.createElement("table");
      const head = table.createTHead().insertRow();
      [word("tier"), word("now"), word("after"), word("change")].forEach((t) => {
        const th = document.createElement("th");
        th.textContent = t;
        head.appendChild(th);
      });
      const body = table.createTBody();
      plan.tiers.forEach((row) => {
        const tr = body.insertRow();
        [row.tier, row.before, row.after, row.after - row.before].forEach((v) => {
          tr.insertCell().textContent = typeof v === "number" ? v.toLocaleString() : v;
        });
      });
      const moved = document.createElement("p");
      moved.textContent = `${word("moved")}: ${plan.moved.toLocaleString()}`;
      output.append(table, moved);
      for (const note of plan.notes) {
        const p = document.createElement("p");
        p.className = "muted";
        p.textContent = note;
        output.append(p);
      }
      const saveButton = $("#tier-save-button");
      if (saveButton) saveButton.disabled = false;
    } catch (error) {
      flash(problemText(error));
    }
  });
  $("#tier-save-button")?.addEventListener("click", async () => {
    try {
      await api("PUT", "/v1/settings/tiers", spec());
      flash(word("saved"), "ok");
    } catch (error) {
      flash(problemText(error));
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  window.TIERWISE_WORDS = readJson("words") || {};
  drawCharts();
  wireButtons();
  wireJobLinks();
  wireBuilder();
  wireImport();
  wireTierEditor();
});
