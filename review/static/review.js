// The review page. Everything shown comes from the JSON API and goes into the DOM as text
// (textContent, never innerHTML): post ids, image ids and URLs are chosen by whoever posted.
"use strict";

(() => {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const operator = document.querySelector('meta[name="operator"]').content;
  // Keys that do something else, so no class may take them.
  const RESERVED = new Set(["n", "u", "j", "k"]);

  const state = {
    items: new Map(),   // record id -> item
    groups: [],         // [{id, members: [record ids]}], oldest first
    posts: {},          // post id -> [entries]
    classes: [],
    keyToClass: {},
    classToKey: {},
    status: new Map(),  // record id -> {kind: pending | judged | skipped | conflict | error, label, message}
    cursor: 0,
    undo: [],           // [{kind: "verdict" | "skip", ids, label}]
    busy: false,
    renewTimer: null,
    emptyTimer: null,
  };

  const $ = (id) => document.getElementById(id);

  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function toast(message, kind = "info") {
    const box = $("toast");
    box.textContent = message;
    box.className = "show " + kind;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { box.className = ""; }, kind === "error" ? 6000 : 2500);
  }

  async function api(method, path, body) {
    const options = { method, credentials: "same-origin", headers: { "X-CSRF-Token": csrf } };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(path, options);
    if (response.status === 401) {
      window.location.assign("/login");
      throw new Error("logged out");
    }
    const type = response.headers.get("Content-Type") || "";
    const data = type.includes("application/json") ? await response.json() : { error: await response.text() };
    if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
    return data;
  }

  // -- filters ----------------------------------------------------------------------------

  function localMidnight(dateText, plusDays = 0) {
    const [y, m, d] = dateText.split("-").map(Number);
    return new Date(y, m - 1, d + plusDays).getTime() / 1000;
  }

  function filterParams() {
    const form = $("filter-form");
    const params = new URLSearchParams();
    for (const box of form.querySelectorAll('input[name="reason"]:checked')) params.append("reason", box.value);
    for (const name of ["class", "version"]) {
      const value = form.elements[name].value.trim();
      if (value) params.set(name, value);
    }
    if (form.elements.from.value) params.set("after", String(localMidnight(form.elements.from.value)));
    // "To" is inclusive: up to the start of the next day.
    if (form.elements.to.value) params.set("before", String(localMidnight(form.elements.to.value, 1)));
    return params;
  }

  function describeFilter() {
    const params = filterParams();
    const parts = [];
    if (params.getAll("reason").length) parts.push(params.getAll("reason").join("+"));
    if (params.get("class")) parts.push("class " + params.get("class"));
    if (params.get("version")) parts.push("v" + params.get("version"));
    const form = $("filter-form");
    if (form.elements.from.value || form.elements.to.value) {
      parts.push(`${form.elements.from.value || "…"} – ${form.elements.to.value || "…"}`);
    }
    $("filter-summary").textContent = parts.length ? "(" + parts.join(", ") + ")" : "(everything)";
  }

  // -- loading ----------------------------------------------------------------------------

  function assignKeys(classes) {
    state.keyToClass = {};
    state.classToKey = {};
    const used = new Set(RESERVED);
    for (const name of classes) {
      const letter = [...name.toLowerCase()].find((c) => /[a-z]/.test(c) && !used.has(c));
      const key = letter || String(classes.indexOf(name) + 1);
      used.add(key);
      state.keyToClass[key] = name;
      state.classToKey[name] = key;
    }
  }

  async function loadQueue(keepId) {
    clearTimeout(state.renewTimer);
    clearTimeout(state.emptyTimer);
    const current = keepId || currentItem()?.record_id;
    let data;
    try {
      data = await api("GET", "/api/queue?" + filterParams().toString());
    } catch (error) {
      toast(error.message, "error");
      renderEmpty("Could not load the queue: " + error.message);
      return;
    }
    state.items = new Map(data.items.map((item) => [item.record_id, item]));
    state.groups = data.groups;
    state.posts = data.posts;
    if (data.classes.length) {
      state.classes = data.classes;
      assignKeys(data.classes);
    }
    const previous = state.status;
    state.status = new Map();
    for (const id of state.items.keys()) {
      const before = previous.get(id);
      state.status.set(id, before && before.kind === "skipped" ? before : { kind: "pending" });
    }
    // Skips are released by this fetch: they can no longer be undone.
    state.undo = state.undo.filter((entry) => entry.kind !== "skip");
    const at = state.groups.findIndex((g) => g.members.includes(current));
    state.cursor = at >= 0 ? at : 0;
    if (!groupPending(state.groups[state.cursor]).length) state.cursor = nextPending(state.cursor);
    render();
    refreshProgress();
    scheduleRenewal(data.lease_s);
    if (!state.groups.some((g) => groupPending(g).length)) state.emptyTimer = setTimeout(() => loadQueue(), 30000);
  }

  // Leases run out: fetch again before they do, which renews them, keeping the cursor.
  function scheduleRenewal(leaseSeconds) {
    const expiries = [...state.items.values()].map((i) => i.lease_expires_at).filter(Boolean);
    if (!expiries.length) return;
    const wait = Math.max(5, Math.min(...expiries) - Date.now() / 1000 - Math.min(60, leaseSeconds / 4));
    state.renewTimer = setTimeout(() => loadQueue(), wait * 1000);
  }

  async function refreshProgress() {
    const params = filterParams();
    const today = new Date();
    params.set("since", String(new Date(today.getFullYear(), today.getMonth(), today.getDate()).getTime() / 1000));
    try {
      const data = await api("GET", "/api/progress?" + params.toString());
      $("done").textContent = String(data.done);
      $("left").textContent = String(data.left);
      const total = data.done + data.left;
      $("meter-fill").style.width = (total ? (100 * data.done) / total : 0).toFixed(1) + "%";
    } catch (error) {
      toast(error.message, "error");
    }
  }

  // -- the cursor -------------------------------------------------------------------------

  function groupPending(group) {
    if (!group) return [];
    return group.members.filter((id) => state.status.get(id)?.kind === "pending");
  }

  function currentGroup() { return state.groups[state.cursor]; }

  function currentItem() {
    const group = currentGroup();
    if (!group) return undefined;
    const id = groupPending(group)[0] || group.members[0];
    return state.items.get(id);
  }

  function nextPending(from) {
    const n = state.groups.length;
    for (let step = 1; step <= n; step++) {
      const index = (from + step) % n;
      if (groupPending(state.groups[index]).length) return index;
    }
    return -1;
  }

  function advance() {
    const next = nextPending(state.cursor);
    if (next < 0) {
      render();
      renderEmpty("All done here. Fetching more…");
      setTimeout(() => loadQueue(), 300);
      return;
    }
    state.cursor = next;
    render();
  }

  function move(delta) {
    if (!state.groups.length) return;
    state.cursor = (state.cursor + delta + state.groups.length) % state.groups.length;
    render();
  }

  // -- actions ----------------------------------------------------------------------------

  async function guarded(action) {
    if (state.busy) return;
    state.busy = true;
    document.body.classList.add("busy");
    try {
      await action();
    } catch (error) {
      toast(error.message, "error");
    } finally {
      state.busy = false;
      document.body.classList.remove("busy");
    }
  }

  function postPending(postId) {
    return [...state.items.values()]
      .filter((i) => i.post_id === postId && state.status.get(i.record_id)?.kind === "pending")
      .map((i) => i.record_id);
  }

  function judge(label, scope) {
    return guarded(async () => {
      const item = currentItem();
      if (!item) return;
      const ids = scope === "post" ? postPending(item.post_id) : groupPending(currentGroup());
      if (!ids.length) { toast("Nothing left to judge here."); return; }
      const data = await api("POST", "/api/verdicts", { record_ids: ids, label });
      const done = [];
      const problems = [];
      for (const result of data.results) {
        if (result.outcome === "applied" || result.outcome === "unchanged") {
          state.status.set(result.record_id, { kind: "judged", label });
          done.push(result.record_id);
        } else {
          state.status.set(result.record_id, { kind: "conflict", message: result.message || result.outcome });
          problems.push(result.message || result.outcome);
        }
      }
      if (done.length) state.undo.push({ kind: "verdict", ids: done, label });
      if (problems.length) toast(`${problems.length} not recorded: ${problems[0]}`, "error");
      else if (done.length > 1) toast(`${label} for ${done.length} images`);
      refreshProgress();
      advance();
    });
  }

  function skip() {
    return guarded(async () => {
      const ids = groupPending(currentGroup());
      if (!ids.length) { move(1); return; }
      const data = await api("POST", "/api/skip", { record_ids: ids });
      for (const id of data.record_ids) state.status.set(id, { kind: "skipped" });
      if (data.record_ids.length) state.undo.push({ kind: "skip", ids: data.record_ids });
      advance();
    });
  }

  function undo() {
    return guarded(async () => {
      const entry = state.undo.pop();
      if (!entry) { toast("Nothing to undo."); return; }
      const path = entry.kind === "verdict" ? "/api/undo" : "/api/unskip";
      const data = await api("POST", path, { record_ids: entry.ids });
      if (!data.record_ids.length) { toast("That can no longer be undone."); return; }
      const missing = data.record_ids.filter((id) => !state.items.has(id));
      if (missing.length) {
        // Judged before the last refill: fetch again, the records are leased back to us.
        state.busy = false;
        await loadQueue(data.record_ids[0]);
      } else {
        for (const id of data.record_ids) state.status.set(id, { kind: "pending" });
        const at = state.groups.findIndex((g) => g.members.includes(data.record_ids[0]));
        if (at >= 0) state.cursor = at;
        render();
      }
      toast(entry.kind === "verdict" ? `Undone: ${entry.label} on ${data.record_ids.length} image(s)` : "Skip undone");
      refreshProgress();
    });
  }

  async function logout() {
    try { await api("POST", "/api/logout", {}); } catch (error) { /* leaving anyway */ }
    window.location.assign("/login");
  }

  // -- rendering --------------------------------------------------------------------------

  function percent(value) { return (100 * value).toFixed(1) + "%"; }

  function thumb(recordId, ok, label) {
    if (!ok) return el("div", { class: "thumb missing", title: label || "no image" }, "no image");
    return el("img", { class: "thumb", src: "/img/" + encodeURIComponent(recordId), alt: label || "", loading: "lazy" });
  }

  function statusText(id) {
    const status = state.status.get(id) || { kind: "pending" };
    if (status.kind === "judged") return "✓ " + status.label;
    if (status.kind === "skipped") return "skipped";
    if (status.kind === "conflict") return "⚠ " + status.message;
    return "";
  }

  function renderEmpty(message) {
    $("current").replaceChildren(el("p", { class: "empty" }, message));
  }

  function renderQueue() {
    const list = $("queue-list");
    list.replaceChildren();
    let pending = 0;
    state.groups.forEach((group, index) => {
      const item = state.items.get(group.members[0]);
      const open = groupPending(group).length;
      pending += open;
      const status = open ? "" : statusText(group.members[0]);
      const row = el("li", {
        class: "q" + (index === state.cursor ? " current" : "") + (open ? "" : " done"),
        onclick: () => { state.cursor = index; render(); },
      },
      thumb(item.record_id, item.image && item.image.ok, item.image_id),
      el("span", { class: "q-text" },
        el("span", { class: "q-title" }, item.top_class + " ", el("span", { class: "badge d-" + item.decision }, item.decision)),
        el("span", { class: "q-sub" }, status || (item.same_post_only ? "same post, outside the filter"
          : item.reason.replace("_", " ")))),
      group.members.length > 1 ? el("span", { class: "group-size", title: "near-duplicates" }, "×" + group.members.length) : null);
      list.append(row);
    });
    $("queue-count").textContent = `(${pending} to judge)`;
    const current = list.querySelector("li.current");
    if (current) current.scrollIntoView({ block: "nearest" });
  }

  function scoreBars(item) {
    const box = el("div", { class: "scores" });
    state.classes.forEach((name, index) => {
      const value = item.scores[name] ?? 0;
      const fill = el("div", { class: "fill c" + (index % 6) });
      fill.style.width = percent(value);
      box.append(el("div", { class: "score" + (name === item.top_class ? " is-top" : "") },
        el("span", { class: "score-name" }, name),
        el("div", { class: "bar" }, fill),
        el("span", { class: "score-value" }, percent(value))));
    });
    return box;
  }

  function renderPost(item) {
    const entries = state.posts[item.post_id] || [];
    const box = el("section", { class: "post" },
      el("h3", {}, `Post: ${entries.length} recorded image${entries.length === 1 ? "" : "s"}`));
    const strip = el("div", { class: "strip" });
    for (const entry of entries) {
      let caption;
      if (entry.record_id === item.record_id) caption = "this one";
      else if (entry.state === "yours") caption = statusText(entry.record_id) || "in your queue";
      else if (entry.state === "judged") caption = `${entry.verdict} (${entry.verdict_operator})`;
      else if (entry.state === "leased") caption = `with ${entry.lease_owner}`;
      else caption = "waiting";
      const figure = el("figure", {
        class: "sibling" + (entry.record_id === item.record_id ? " this" : ""),
        title: entry.image_id,
        onclick: () => {
          const at = state.groups.findIndex((g) => g.members.includes(entry.record_id));
          if (at >= 0) { state.cursor = at; render(); }
        },
      }, thumb(entry.record_id, entry.has_url, entry.image_id),
      el("figcaption", {}, el("span", { class: "badge d-" + entry.decision }, entry.decision), " ", caption));
      strip.append(figure);
    }
    box.append(strip);
    return box;
  }

  function renderGroup(group) {
    if (group.members.length < 2) return null;
    const box = el("section", { class: "group" },
      el("h3", {}, `Near-duplicates: ${group.members.length} images`,
        el("span", { class: "hint" }, " — one verdict applies to all of them")));
    const strip = el("div", { class: "strip" });
    for (const id of group.members) {
      const member = state.items.get(id);
      strip.append(el("figure", { class: "sibling" },
        thumb(id, member.image && member.image.ok, member.image_id),
        el("figcaption", {}, statusText(id) || member.post_id)));
    }
    box.append(strip);
    return box;
  }

  // -- what the text reader found -----------------------------------------------------------

  const ENTITIES = new Set(["PHONE", "EMAIL", "POSTAL_CODE", "ADDRESS", "MESSENGER_ID"]);
  const READING_STATUS = {
    READ: "text read",
    SKIPPED: "no text (gate)",
    BUDGET_EXCEEDED: "text not fully read: budget exceeded",
    FAILED: "text not fully read: the reader failed",
    DISABLED: "text reader off",
  };

  function entityClass(entity) { return "e-" + (ENTITIES.has(entity) ? entity : "OTHER"); }

  function findingLabel(finding) {
    return `${finding.entity} ${finding.masked} ${percent(finding.confidence)}`;
  }

  // One absolutely positioned box per finding over the displayed image. Boxes are fractions of
  // the image's width and height, so percentages of a frame the size of the image place them at
  // any display size. Positions go through the CSSOM (allowed by the page's style-src 'self').
  function findingBoxes(reading) {
    const layer = el("div", { class: "findings-layer", "aria-hidden": "true" });
    (reading?.findings || []).forEach((finding, index) => {
      const [x0, y0, x1, y1] = finding.box;
      const box = el("div", { class: "finding-box " + entityClass(finding.entity), "data-finding": String(index),
        title: findingLabel(finding) },
        el("span", { class: "finding-label" + (y0 < 0.08 ? " below" : "") }, findingLabel(finding)));
      box.style.left = (100 * x0).toFixed(2) + "%";
      box.style.top = (100 * y0).toFixed(2) + "%";
      box.style.width = (100 * (x1 - x0)).toFixed(2) + "%";
      box.style.height = (100 * (y1 - y0)).toFixed(2) + "%";
      layer.append(box);
    });
    return layer;
  }

  function highlight(index, on) {
    for (const box of document.querySelectorAll(`#current .finding-box[data-finding="${index}"]`)) {
      box.classList.toggle("hot", on);
    }
  }

  function readingPanel(item) {
    const reading = item.reading;
    if (!reading) return null;
    const incomplete = reading.status === "BUDGET_EXCEEDED" || reading.status === "FAILED";
    let status = READING_STATUS[reading.status] || "text reader: " + reading.status;
    if (reading.status === "READ") status += `: ${reading.lines} line${reading.lines === 1 ? "" : "s"}`;
    const box = el("section", { class: "reading" },
      el("h3", {}, "Text in the image"),
      el("p", { class: "reading-status" + (incomplete ? " incomplete" : ""), "data-status": reading.status }, status));
    if (reading.fused) {
      const fused = item.scores.personal_info ?? 0;
      box.append(el("p", { class: "reading-fusion" }, "personal_info ",
        el("b", {}, percent(fused)), " (fused with the text) · CNN alone ", el("b", {}, percent(reading.cnn_personal_info))));
    }
    if (reading.cues.length) box.append(el("p", { class: "reading-cues" }, "Cue words: " + reading.cues.join(", ")));
    if (reading.findings.length) {
      const list = el("ol", { class: "findings" });
      reading.findings.forEach((finding, index) => {
        list.append(el("li", { class: "finding", "data-finding": String(index),
          onmouseenter: () => highlight(index, true), onmouseleave: () => highlight(index, false) },
          el("span", { class: "badge " + entityClass(finding.entity) }, finding.entity), " ",
          el("span", { class: "mono" }, finding.masked), " ",
          el("span", { class: "finding-confidence" }, percent(finding.confidence)),
          finding.evidence.length ? el("span", { class: "finding-evidence" }, finding.evidence.join(" · ")) : null));
      });
      box.append(list);
    } else if (reading.status === "READ") {
      box.append(el("p", { class: "hint" }, "No personal data found."));
    }
    return box;
  }

  function renderCurrent() {
    const group = currentGroup();
    const item = currentItem();
    if (!group || !item) {
      renderEmpty("Nothing to review with these filters. Checking again every 30 s.");
      return;
    }
    const image = item.image || { ok: false, error: "not fetched" };
    const figure = el("figure", { class: "main-image" },
      image.ok
        ? el("div", { class: "image-frame" },
          el("img", { src: "/img/" + encodeURIComponent(item.record_id), alt: "image under review" }),
          findingBoxes(item.reading))
        : el("div", { class: "placeholder" }, "Cannot show this image: ", image.error));
    const facts = el("dl", { class: "facts" },
      el("dt", {}, "Post"), el("dd", { class: "mono" }, item.post_id),
      el("dt", {}, "Image"), el("dd", { class: "mono" }, item.image_id),
      el("dt", {}, "Source"), el("dd", { class: "mono url" }, item.url || "sent inline (sha256 " + item.content_sha256.slice(0, 16) + "…)"),
      el("dt", {}, "Model"), el("dd", {}, `${item.model_name} v${item.model_version}`),
      el("dt", {}, "Recorded"), el("dd", {}, new Date(item.created_at * 1000).toLocaleString()));
    const done = !groupPending(group).length;
    const size = group.members.length;
    const parts = [
      el("div", { class: "verdict-line" },
        el("span", { class: "badge big d-" + item.decision }, item.decision),
        el("span", {}, " model says ", el("b", {}, item.top_class), " · ", item.reason.replace("_", " ")),
        size > 1 ? el("span", { class: "group-banner" }, `×${size} near-duplicates: one verdict for all ${size}`) : null,
        done ? el("span", { class: "state" }, statusText(item.record_id)) : null),
      image.changed ? el("p", { class: "warning" },
        "The image at this URL has changed since it was classified: this is not what the model saw.") : null,
      el("div", { class: "columns" },
        figure,
        el("div", { class: "side" }, scoreBars(item), readingPanel(item), renderGroup(group), renderPost(item), facts)),
    ];
    // replaceChildren would turn a null into the text "null".
    $("current").replaceChildren(...parts.filter(Boolean));
  }

  // Lets "personal_info" break after the underscore on a narrow button, not mid-word.
  function breakable(name) { return name.replace(/_/g, "_\u200b"); }

  function renderActions() {
    const imageRow = $("image-actions");
    const postRow = $("post-actions");
    const size = currentGroup()?.members.length || 1;
    imageRow.replaceChildren(el("span", { class: "row-label" }, size > 1 ? `These ${size}` : "This image"));
    postRow.replaceChildren(el("span", { class: "row-label" }, "Whole post"));
    state.classes.forEach((name, index) => {
      const key = state.classToKey[name];
      imageRow.append(el("button", { type: "button", class: "act c" + (index % 6), "data-class": name,
        onclick: () => judge(name, "group") }, el("kbd", {}, key), el("span", {}, breakable(name))));
      postRow.append(el("button", { type: "button", class: "act post c" + (index % 6), "data-class": name,
        onclick: () => judge(name, "post") }, el("kbd", {}, key.toUpperCase()), el("span", {}, breakable(name))));
    });
    imageRow.append(el("button", { type: "button", class: "act skip", onclick: skip }, el("kbd", {}, "n"),
      el("span", {}, "skip")));
    postRow.append(el("button", { type: "button", class: "act post undo", onclick: undo }, el("kbd", {}, "u"),
      el("span", {}, "undo")));
    const keys = state.classes.map((c) => `${state.classToKey[c]} ${c}`).join(" · ");
    $("help").textContent = `${keys} · Shift+key: the whole post · n skip · u undo · j/k next/previous`;
  }

  function render() {
    renderQueue();
    renderCurrent();
    renderActions();
  }

  // -- input ------------------------------------------------------------------------------

  document.addEventListener("keydown", (event) => {
    const target = event.target;
    if (target instanceof HTMLElement && target.closest("input, textarea, select")) return;
    if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "z") {
      event.preventDefault();
      undo();
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const key = event.key.toLowerCase();
    if (state.keyToClass[key]) {
      event.preventDefault();
      judge(state.keyToClass[key], event.shiftKey ? "post" : "group");
    } else if (key === "n") { event.preventDefault(); skip(); }
    else if (key === "u") { event.preventDefault(); undo(); }
    else if (key === "j" || key === "arrowdown") { event.preventDefault(); move(1); }
    else if (key === "k" || key === "arrowup") { event.preventDefault(); move(-1); }
  });

  $("filter-form").addEventListener("submit", (event) => {
    event.preventDefault();
    describeFilter();
    $("filters").open = false;
    loadQueue();
  });
  $("logout").addEventListener("click", logout);
  $("operator").textContent = operator;
  describeFilter();
  loadQueue();
})();
