// Webhooks: the list, the create/edit form with the event picker, and a
// webhook's page (state, actions, charts, replay, deliveries).

import { call, webhookBase, eventTypes } from "./api.js";
import { h, replace, field, errorBox, notify, busy, confirmAction, showOnce, when, badge, table } from "./ui.js";
import { successChart, latencyChart } from "./charts.js";
import { deliveriesPanel, replayPanel } from "./deliveries.js";

/** How often a webhook's charts refresh themselves, ms. */
const STATS_REFRESH_MS = 15000;

/** Where a webhook's page is. */
export function webhookHref(id) {
  return `#/webhooks/${encodeURIComponent(id)}`;
}

function stateBadges(w) {
  return [
    w.active ? badge("active") : badge("inactive"),
    " ",
    w.circuit && w.circuit !== "closed" ? badge(`circuit ${w.circuit}`, w.circuit) : null,
  ];
}

export function webhookList(s) {
  const el = h("section", { "aria-labelledby": "wh-title" });
  const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  replace(
    el,
    h(
      "div",
      { class: "spread" },
      h("h1", { id: "wh-title" }, s.kind === "admin" ? "Organization webhooks" : "Webhooks"),
      h("a", { class: "button primary", href: "#/webhooks/new" }, "New webhook"),
    ),
    s.kind === "admin" ? h("p", { class: "muted" }, "Each receives the matching events of every app of your organization.") : null,
    body,
  );
  (async () => {
    try {
      const list = await call("GET", `${webhookBase(s.kind)}?limit=100`);
      if (!list.data.length) {
        replace(body, h("div", { class: "panel" }, h("p", {}, "No webhooks yet. "), h("a", { href: "#/webhooks/new" }, "Create the first one.")));
        return;
      }
      replace(
        body,
        table(
          `${list.total} webhook${list.total === 1 ? "" : "s"}`,
          ["Name", "URL", "Events", "State"],
          list.data.map((w) =>
            h(
              "tr",
              {},
              h("td", {}, h("a", { href: webhookHref(w.id) }, w.name || w.id)),
              h("td", { class: "mono" }, w.url),
              h("td", { class: "mono" }, w.events.join(", ")),
              h("td", {}, stateBadges(w)),
            ),
          ),
        ),
      );
    } catch (e) {
      replace(body, errorBox(e));
    }
  })();
  return { el };
}

/** The event picker: the catalog by category, searchable; patterns as chips. */
async function eventPicker(selected) {
  const chosen = new Set(selected);
  const catalog = await eventTypes();
  const names = new Set(catalog.map((e) => e.name));
  const search = h("input", { type: "search", placeholder: "Search events", autocomplete: "off" });
  const all = h("input", { type: "checkbox", checked: chosen.has("*") });
  const chips = h("div", { class: "chips", "aria-label": "Selected patterns" });
  const list = h("div", { class: "picker" });
  const boxes = [];
  const drawChips = () =>
    replace(
      chips,
      [...chosen]
        .filter((n) => n !== "*" && !names.has(n))
        .map((p) =>
          h(
            "span",
            { class: "chip mono" },
            p,
            h("button", { type: "button", "aria-label": `Remove ${p}`, onclick: () => { chosen.delete(p); drawChips(); } }, "×"),
          ),
        ),
    );
  all.addEventListener("change", () => {
    if (all.checked) chosen.add("*");
    else chosen.delete("*");
    for (const b of boxes) b.input.disabled = all.checked;
  });
  const categories = new Map();
  for (const e of catalog) {
    if (!categories.has(e.category)) categories.set(e.category, []);
    categories.get(e.category).push(e);
  }
  for (const [category, events] of categories) {
    const set = h("fieldset", {}, h("legend", {}, category));
    for (const e of events) {
      const input = h("input", { type: "checkbox", value: e.name, checked: chosen.has(e.name), disabled: chosen.has("*") });
      input.addEventListener("change", () => (input.checked ? chosen.add(e.name) : chosen.delete(e.name)));
      const row = h("label", { class: "check" }, input, h("span", {}, h("span", { class: "mono" }, e.name), " ", h("span", { class: "desc" }, e.description)));
      boxes.push({ input, row, text: `${e.name} ${e.description} ${category}`.toLowerCase(), set });
      set.append(row);
    }
    list.append(set);
  }
  search.addEventListener("input", () => {
    const q = search.value.trim().toLowerCase();
    for (const b of boxes) b.row.hidden = q !== "" && !b.text.includes(q);
    for (const set of list.children) set.hidden = [...set.querySelectorAll("label")].every((l) => l.hidden);
  });
  drawChips();
  const el = h(
    "div",
    { class: "field", role: "group", "aria-labelledby": "events-label" },
    h("div", { id: "events-label" }, h("strong", {}, "Events")),
    h("label", { class: "check" }, all, "All events (*)"),
    chips,
    field("Search the catalog", search),
    list,
  );
  return { el, value: () => [...chosen] };
}

/** "Name: value" lines ⇄ an object. */
function headersText(obj) {
  return Object.entries(obj || {}).map(([k, v]) => `${k}: ${v}`).join("\n");
}
function parseHeaders(text) {
  const out = {};
  for (const line of text.split("\n").map((l) => l.trim()).filter(Boolean)) {
    const i = line.indexOf(":");
    if (i <= 0) throw new Error(`Header line "${line}" is not "Name: value".`);
    out[line.slice(0, i).trim()] = line.slice(i + 1).trim();
  }
  return out;
}

/** The event catalog on its own page, searchable, by category. */
export function catalogView() {
  const search = h("input", { type: "search", placeholder: "message, call, group…", autocomplete: "off" });
  const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  const el = h(
    "section",
    { "aria-labelledby": "cat-title" },
    h("h1", { id: "cat-title" }, "Event catalog"),
    h("p", { class: "muted" }, "Every event a webhook can select. A webhook also takes patterns: * for all, message.* for a family."),
    h("div", { class: "panel" }, field("Search events", search)),
    body,
  );
  let all = [];
  const draw = () => {
    const q = search.value.trim().toLowerCase();
    const shown = all.filter((e) => !q || `${e.name} ${e.description} ${e.category}`.toLowerCase().includes(q));
    const categories = [...new Set(shown.map((e) => e.category))];
    replace(
      body,
      shown.length
        ? categories.map((c) =>
            table(
              c,
              ["Event", "Description"],
              shown.filter((e) => e.category === c).map((e) => h("tr", {}, h("td", { class: "mono nowrap" }, e.name), h("td", {}, e.description))),
            ),
          )
        : h("p", { class: "muted" }, "No event matches."),
    );
  };
  search.addEventListener("input", draw);
  eventTypes()
    .then((list) => {
      all = list;
      draw();
    })
    .catch((e) => replace(body, errorBox(e)));
  return { el };
}

export function webhookForm(s, id) {
  const el = h("section", { "aria-labelledby": "form-title" }, h("h1", { id: "form-title" }, id ? "Edit webhook" : "New webhook"));
  const holder = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  el.append(holder);
  (async () => {
    try {
      const w = id ? await call("GET", `${webhookBase(s.kind)}/${encodeURIComponent(id)}`) : null;
      const name = h("input", { type: "text", value: w?.name ?? "", maxlength: 200 });
      const url = h("input", { type: "url", value: w?.url ?? "", required: true, placeholder: "https://example.com/hooks" });
      const active = h("input", { type: "checkbox", checked: w ? w.active : true });
      const retries = h("input", { type: "number", min: 0, max: 20, value: w?.retry_attempts ?? 3 });
      const timeout = h("input", { type: "number", min: 1, max: 60, value: w?.timeout ?? 10 });
      const rate = h("input", { type: "number", min: 1, value: w?.rate_limit ?? "", placeholder: "no limit" });
      const headers = h("textarea", { spellcheck: "false", placeholder: "X-Tenant: acme" });
      headers.value = headersText(w?.headers);
      const secret = h("input", { type: "password", autocomplete: "off", placeholder: "generated when empty" });
      const picker = await eventPicker(w ? w.events : ["message.received"]);
      const error = h("div");
      const save = h("button", { class: "primary", type: "submit" }, id ? "Save changes" : "Create webhook");
      const form = h(
        "form",
        { class: "panel" },
        field("Name", name, "Optional, for you."),
        field("URL", url, "Where hookrelay sends signed POST requests."),
        picker.el,
        h("div", { class: "grid2" }, field("Retries after a failed attempt", retries, "0 to 20"), field("Timeout (seconds)", timeout, "1 to 60"), field("Rate limit (deliveries per second)", rate)),
        field("Custom headers", headers, "One \"Name: value\" per line."),
        id ? null : field("Signing secret", secret, "Optional: whsec_… of your own. Rotate it later from the webhook's page."),
        h("label", { class: "check" }, active, "Active: deliver events to this URL"),
        error,
        h("div", { class: "row" }, save, h("a", { class: "button", href: id ? webhookHref(id) : "#/webhooks" }, "Cancel")),
      );
      form.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        error.replaceChildren();
        let body;
        try {
          body = {
            name: name.value.trim(),
            url: url.value.trim(),
            events: picker.value(),
            active: active.checked,
            retry_attempts: Number(retries.value),
            timeout: Number(timeout.value),
            headers: parseHeaders(headers.value),
            rate_limit: rate.value === "" ? null : Number(rate.value),
          };
        } catch (e) {
          replace(error, errorBox(e));
          return;
        }
        if (!id && secret.value.trim()) body.secret = secret.value.trim();
        await busy(save, async () => {
          try {
            const saved = id
              ? await call("PATCH", `${webhookBase(s.kind)}/${encodeURIComponent(id)}`, body)
              : await call("POST", webhookBase(s.kind), body);
            notify(id ? "Webhook saved." : "Webhook created.");
            location.hash = webhookHref(saved.id);
          } catch (e) {
            replace(error, errorBox(e));
          }
        });
      });
      replace(holder, form);
      name.focus();
    } catch (e) {
      replace(holder, errorBox(e));
    }
  })();
  return { el };
}

function statsPanel(s, id) {
  const el = h("section", { class: "panel", "aria-labelledby": "stats-title" }, h("h2", { id: "stats-title" }, "Last 24 hours"));
  const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  el.append(body);
  const load = async () => {
    try {
      const st = await call("GET", `${webhookBase(s.kind)}/${encodeURIComponent(id)}/stats`);
      const t = st.total;
      const pct = t.success_rate === null ? "—" : `${(t.success_rate * 100).toFixed(1)}%`;
      const ms = (v) => (t.latency_ms ? `${v} ms` : "—");
      replace(
        body,
        h(
          "div",
          { class: "totals", id: "stats-totals" },
          h("div", {}, h("strong", {}, String(t.attempts)), "attempts"),
          h("div", {}, h("strong", {}, pct), "succeeded"),
          h("div", {}, h("strong", {}, ms(t.latency_ms?.p50)), "latency p50"),
          h("div", {}, h("strong", {}, ms(t.latency_ms?.p99)), "latency p99"),
        ),
        st.truncated ? h("p", { class: "muted" }, "Busy webhook: these figures cover its most recent 20,000 attempts, not the whole day.") : null,
        h(
          "div",
          { class: "charts" },
          h("figure", { class: "chart" }, h("figcaption", {}, "Success rate per hour"), successChart(st)),
          h(
            "figure",
            { class: "chart" },
            h("figcaption", {}, "Latency per hour"),
            latencyChart(st),
            h("div", { class: "legend" }, h("span", { class: "p50" }, "p50"), h("span", { class: "p99" }, "p99")),
          ),
        ),
      );
    } catch (e) {
      replace(body, errorBox(e));
    }
  };
  return { el, load };
}

export function webhookDetail(s, id) {
  const base = `${webhookBase(s.kind)}/${encodeURIComponent(id)}`;
  const el = h("section", { "aria-labelledby": "detail-title" });
  const head = h("div", {}, h("h1", { id: "detail-title" }, id));
  const stateBox = h("div");
  const actions = h("div", { class: "row" });
  const stats = statsPanel(s, id);
  const deliveries = deliveriesPanel(s, id);
  el.append(h("p", {}, h("a", { href: "#/webhooks" }, "← All webhooks")), head, stateBox, h("div", { class: "panel" }, actions), deliveries.el, stats.el, replayPanel(s, id));

  const draw = (w) => {
    replace(
      head,
      h("h1", { id: "detail-title" }, w.name || w.id),
      h("p", { class: "mono" }, w.url),
      h("p", {}, stateBadges(w), " ", h("span", { class: "muted" }, `Events: ${w.events.join(", ")}`)),
    );
    const notes = [];
    if (!w.active && w.failing_since) notes.push(h("div", { class: "state bad", role: "status" }, h("strong", {}, "Disabled automatically. "), `It failed without a success since ${when(w.failing_since)}. Fix the endpoint, then enable it again.`));
    else if (!w.active) notes.push(h("div", { class: "state warn", role: "status" }, h("strong", {}, "Inactive. "), "No events are delivered to it until it is enabled."));
    else if (w.failing_since) notes.push(h("div", { class: "state warn", role: "status" }, h("strong", {}, "Failing. "), `Every attempt has failed since ${when(w.failing_since)}; it is disabled automatically if this goes on.`));
    if (w.circuit === "open") notes.push(h("div", { class: "state bad", role: "status" }, h("strong", {}, "Circuit open. "), "Its host keeps failing: deliveries wait, and one probe at a time tests whether it is back."));
    else if (w.circuit === "half_open") notes.push(h("div", { class: "state warn", role: "status" }, h("strong", {}, "Circuit half open. "), "A probe is testing whether its host is back."));
    replace(stateBox, notes);
    const toggle = h("button", { type: "button" }, w.active ? "Disable" : "Enable");
    toggle.addEventListener("click", () =>
      busy(toggle, async () => {
        const next = await call("PATCH", base, { active: !w.active });
        notify(next.active ? "Webhook enabled." : "Webhook disabled.");
        draw(next);
      }),
    );
    const test = h("button", { type: "button" }, "Send test event");
    test.addEventListener("click", () =>
      busy(test, async () => {
        const r = await call("POST", `${base}/test`);
        notify(`Test event sent (delivery ${r.delivery_id}).`);
        deliveries.refresh();
      }),
    );
    const rotate = h("button", { type: "button", id: "rotate-secret" }, "Rotate secret");
    rotate.addEventListener("click", async () => {
      if (!(await confirmAction("Rotate the signing secret?", "A new secret signs from now on; the old one keeps signing too during the grace period, so your receiver can switch over.", "Rotate"))) return;
      await busy(rotate, async () => {
        const r = await call("POST", `${base}/rotate-secret`);
        await showOnce("New signing secret", "Secret", r.secret);
      });
    });
    const del = h("button", { type: "button", class: "danger" }, "Delete");
    del.addEventListener("click", async () => {
      if (!(await confirmAction("Delete this webhook?", `${w.url} stops receiving events, and its pending deliveries are cancelled. This cannot be undone.`, "Delete"))) return;
      await busy(del, async () => {
        await call("DELETE", base);
        notify("Webhook deleted.");
        location.hash = "#/webhooks";
      });
    });
    replace(actions, h("a", { class: "button", href: `${webhookHref(id)}/edit` }, "Edit"), toggle, test, rotate, del);
  };

  // The webhook's state (breaker, auto-disable) and its charts refresh
  // together.
  let statsTimer = null;
  let stopped = false;
  const refreshStats = async () => {
    if (stopped) return;
    await stats.load();
    if (stopped) return;
    statsTimer = setTimeout(async () => {
      if (stopped) return;
      try {
        draw(await call("GET", base));
      } catch (e) {
        notify(e.message, true);
      }
      refreshStats();
    }, STATS_REFRESH_MS);
  };
  (async () => {
    try {
      draw(await call("GET", base));
      deliveries.start();
      refreshStats();
    } catch (e) {
      replace(head, h("h1", { id: "detail-title" }, "Webhook"), errorBox(e));
    }
  })();
  return {
    el,
    stop() {
      stopped = true;
      deliveries.stop();
      clearTimeout(statsTimer);
    },
  };
}
