// voicetune pair viewer: plain DOM, no framework, no network. Data comes from data.js
// (window.VOICETUNE_DATA); every piece of text goes in through textContent, never innerHTML.
"use strict";

(function () {
  const data = window.VOICETUNE_DATA || { records: [], rejected: [] };
  const records = data.records;
  const $ = (id) => document.getElementById(id);
  const filters = ["kind", "shape", "section", "style", "split"].map((f) => $("filter-" + f));
  let shown = records;
  let index = 0;

  function fillSelect(select) {
    const field = select.dataset.field;
    const values = Array.from(new Set(records.map((r) => r[field]))).sort();
    select.append(new Option("all", ""));
    values.forEach((v) => select.append(new Option(v, v)));
  }

  function matches(record, query) {
    for (const select of filters) {
      if (select.value && record[select.dataset.field] !== select.value) return false;
    }
    if (!query) return true;
    return record.rough.toLowerCase().includes(query) || record.original.toLowerCase().includes(query);
  }

  function applyFilters() {
    const current = shown[index];
    const query = $("search").value.trim().toLowerCase();
    shown = records.filter((r) => matches(r, query));
    // Stay on the same record when it survives the new filter.
    const kept = current ? shown.indexOf(current) : -1;
    index = kept >= 0 ? kept : 0;
    render();
  }

  function metaItem(label, value) {
    const span = document.createElement("span");
    const b = document.createElement("b");
    b.textContent = String(value);
    span.append(label + " ", b);
    return span;
  }

  function showDiff(target, ops, side, tag) {
    target.replaceChildren();
    ops.forEach(([op, text]) => {
      if (op === "=") target.append(text);
      else if (op === side) {
        const mark = document.createElement(tag);
        mark.textContent = text;
        target.append(mark);
      }
    });
  }

  function render() {
    const record = shown[index];
    $("counter").textContent = shown.length ? `${index + 1} / ${shown.length}` : "0 / 0";
    $("empty").hidden = Boolean(record);
    $("pair").hidden = !record;
    $("meta").replaceChildren();
    if (!record) return;
    if (record.diff) {
      // A revision pair: the author's deletions marked in the rough text, insertions in the polished.
      showDiff($("rough"), record.diff, "-", "del");
      showDiff($("original"), record.diff, "+", "ins");
    } else {
      $("rough").textContent = record.rough;
      $("original").textContent = record.original;
    }
    $("words-rough").textContent = `(${record.words_rough} words)`;
    $("words-original").textContent = `(${record.words_original} words)`;
    $("meta").append(
      metaItem("id", record.id), metaItem("paper", record.paper), metaItem("section", record.section),
      metaItem("kind", record.kind), metaItem("shape", record.shape), metaItem("style", record.style), metaItem("split", record.split),
      metaItem("tokens", record.tokens), metaItem("weight", record.weight));
  }

  function move(step) {
    if (!shown.length) return;
    index = (index + step + shown.length) % shown.length;
    render();
  }

  function renderRejected() {
    const body = $("rejected-rows");
    const fields = ["reason", "detail", "paper", "section", "shape", "style", "kind", "rough"];
    data.rejected.forEach((item) => {
      const row = document.createElement("tr");
      fields.forEach((f) => {
        const cell = document.createElement("td");
        cell.className = f;
        cell.textContent = item[f] == null ? "" : String(item[f]);
        row.append(cell);
      });
      body.append(row);
    });
    $("rejected-count").textContent = `(${data.rejected.length})`;
    $("rejected-empty").hidden = data.rejected.length > 0;
  }

  function showTab(tab) {
    document.querySelectorAll(".tab").forEach((t) => {
      const active = t === tab;
      t.classList.toggle("active", active);
      $(t.dataset.panel).hidden = !active;
    });
  }

  function onKey(event) {
    // Keys typed into the search box or a select belong to that control.
    if (event.target.closest("input, select, textarea") || $("panel-pairs").hidden) return;
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    const step = { ArrowRight: 1, j: 1, ArrowLeft: -1, k: -1 }[event.key];
    if (step) {
      event.preventDefault();
      move(step);
    }
  }

  filters.forEach((select) => { fillSelect(select); select.addEventListener("change", applyFilters); });
  $("search").addEventListener("input", applyFilters);
  $("prev").addEventListener("click", () => move(-1));
  $("next").addEventListener("click", () => move(1));
  document.querySelectorAll(".tab").forEach((t) => t.addEventListener("click", () => showTab(t)));
  document.addEventListener("keydown", onKey);
  renderRejected();
  render();
})();
