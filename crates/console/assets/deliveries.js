// Deliveries: a webhook's list (status filter, paging, refreshing by
// itself), one delivery with its attempts and a retry, and replay.

import { call, webhookBase } from "./api.js";
import { h, replace, field, errorBox, notify, busy, when, badge, table } from "./ui.js";

/** How often the first page of deliveries refreshes itself, ms. */
const REFRESH_MS = 2000;

function deliveryHref(webhookId, id) {
  return `#/webhooks/${encodeURIComponent(webhookId)}/deliveries/${encodeURIComponent(id)}`;
}

export function deliveriesPanel(s, webhookId) {
  const list = `${webhookBase(s.kind)}/${encodeURIComponent(webhookId)}/deliveries`;
  const status = h("select", {}, ["", "pending", "delivered", "failed", "cancelled"].map((v) => h("option", { value: v }, v || "any status")));
  const body = h("div", { "aria-live": "polite", "aria-busy": "true" }, h("p", { class: "muted" }, "Loading…"));
  const newer = h("button", { type: "button", disabled: true }, "Newest");
  const older = h("button", { type: "button", disabled: true }, "Older");
  const live = h("span", { class: "muted" });
  const el = h(
    "section",
    { class: "panel", "aria-labelledby": "dlv-title" },
    h("div", { class: "spread" }, h("h2", { id: "dlv-title" }, "Deliveries"), live),
    h("div", { class: "row" }, field("Status", status)),
    body,
    h("div", { class: "row" }, newer, older),
  );
  // Cursors of the pages before the current one; the first page has none.
  let cursors = [];
  let next = null;
  let timer = null;
  let stopped = true;
  // Each load takes a number; only the latest may schedule the next, so a
  // filter change during a refresh never leaves two refresh chains running.
  let loads = 0;

  const load = async () => {
    clearTimeout(timer);
    if (stopped) return;
    const mine = ++loads;
    // A hidden tab asks nothing; it catches up when shown again.
    if (document.hidden && cursors.length === 0) {
      timer = setTimeout(load, REFRESH_MS);
      return;
    }
    const cursor = cursors.length ? cursors[cursors.length - 1] : null;
    const q = new URLSearchParams({ limit: "20", order: "newest" });
    if (status.value) q.set("status", status.value);
    if (cursor) q.set("cursor", cursor);
    try {
      const page = await call("GET", `${list}?${q}`);
      if (mine !== loads || stopped) return;
      next = page.next_cursor;
      replace(
        body,
        page.data.length
          ? table(
              "Deliveries, newest first",
              ["Delivery", "Event", "Status", "Attempts", "Last answer", "Created"],
              page.data.map((d) =>
                h(
                  "tr",
                  { "data-delivery": d.id, "data-status": d.status },
                  h("td", { class: "mono" }, h("a", { href: deliveryHref(webhookId, d.id) }, d.id)),
                  h("td", { class: "mono nowrap" }, d.event),
                  h("td", {}, badge(d.status)),
                  h("td", {}, String(d.attempts)),
                  h("td", {}, d.last_status_code ? String(d.last_status_code) : d.last_error || "—"),
                  h("td", {}, when(d.created_at)),
                ),
              ),
            )
          : h("p", { class: "muted" }, status.value ? `No ${status.value} deliveries here.` : "No deliveries yet. Send a test event to see one."),
      );
      body.setAttribute("aria-busy", "false");
      newer.disabled = cursors.length === 0;
      older.disabled = !next;
    } catch (e) {
      if (mine === loads) replace(body, errorBox(e));
    }
    if (mine !== loads) return;
    // Only the first page refreshes by itself: later pages hold still.
    if (!stopped && cursors.length === 0) {
      live.textContent = "Refreshing every 2 s";
      timer = setTimeout(load, REFRESH_MS);
    } else {
      live.textContent = "";
    }
  };
  status.addEventListener("change", () => {
    cursors = [];
    load();
  });
  older.addEventListener("click", () => {
    if (!next) return;
    cursors.push(next);
    load();
  });
  newer.addEventListener("click", () => {
    cursors = [];
    load();
  });
  return {
    el,
    start() {
      stopped = false;
      load();
    },
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
    refresh() {
      if (!stopped) load();
    },
  };
}

/** A `datetime-local` value for a Date, in the viewer's time zone. */
function localValue(d) {
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

export function replayPanel(s, webhookId) {
  const since = h("input", { type: "datetime-local", required: true, value: localValue(new Date(Date.now() - 3600_000)) });
  const until = h("input", { type: "datetime-local" });
  const result = h("div", { role: "status" });
  const go = h("button", { type: "submit" }, "Replay");
  const form = h(
    "form",
    { class: "panel", "aria-labelledby": "replay-title" },
    h("h2", { id: "replay-title" }, "Replay"),
    h("p", { class: "muted" }, "Deliver again every logged event of this window that the webhook selects, as new deliveries."),
    h("div", { class: "grid2" }, field("From", since, "Your local time."), field("Until", until, "Empty: now.")),
    go,
    result,
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    result.replaceChildren();
    const from = new Date(since.value);
    if (Number.isNaN(from.getTime())) {
      replace(result, errorBox(new Error("Pick the start of the window.")));
      return;
    }
    const body = { since: from.toISOString() };
    if (until.value) body.until = new Date(until.value).toISOString();
    await busy(go, async () => {
      try {
        const r = await call("POST", `${webhookBase(s.kind)}/${encodeURIComponent(webhookId)}/replay`, body);
        replace(result, h("p", { id: "replay-result" }, `${r.replayed} event${r.replayed === 1 ? "" : "s"} replayed.`));
      } catch (e) {
        replace(result, errorBox(e));
      }
    });
  });
  return form;
}

export function deliveryDetail(s, webhookId, id) {
  const el = h("section", { "aria-labelledby": "d-title" });
  const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  el.append(h("p", {}, h("a", { href: `#/webhooks/${encodeURIComponent(webhookId)}` }, "← Webhook")), h("h1", { id: "d-title", class: "mono" }, id), body);
  let timer = null;
  let stopped = false;
  let loads = 0;
  const load = async () => {
    clearTimeout(timer);
    if (stopped) return;
    const mine = ++loads;
    try {
      const d = await call("GET", `/v1/deliveries/${encodeURIComponent(id)}`);
      if (mine !== loads || stopped) return;
      const retry = h("button", { type: "button", class: "primary", id: "retry" }, "Retry now");
      retry.addEventListener("click", () =>
        busy(retry, async () => {
          await call("POST", `/v1/deliveries/${encodeURIComponent(id)}/retry`);
          notify("Retry queued: the delivery is attempted again now.");
          load();
        }),
      );
      replace(
        body,
        h(
          "div",
          { class: "panel" },
          h("p", {}, badge(d.status), " ", h("span", { class: "mono" }, d.event), " ", h("span", { class: "muted" }, `event ${d.event_id}`)),
          h(
            "p",
            { class: "muted" },
            `Created ${when(d.created_at)}, updated ${when(d.updated_at)}`,
            d.next_attempt_at ? `; next attempt ${when(d.next_attempt_at)}` : "",
          ),
          d.status === "failed" || d.status === "cancelled" ? retry : null,
        ),
        h(
          "section",
          { class: "panel", "aria-labelledby": "payload-title" },
          h("h2", { id: "payload-title" }, "Event data"),
          d.data === null || d.data === undefined
            ? h("p", { class: "muted" }, "No longer in the log (older than the retention period).")
            : h("pre", { class: "mono", id: "payload" }, JSON.stringify(d.data, null, 2)),
        ),
        table(
          "Attempts",
          ["#", "Started", "Duration", "Status code", "Error", "Response body"],
          d.attempt_log.length
            ? d.attempt_log.map((a) =>
                h(
                  "tr",
                  { "data-attempt": a.attempt },
                  h("td", {}, String(a.attempt)),
                  h("td", {}, when(a.started_at)),
                  h("td", {}, `${a.duration_ms} ms`),
                  h("td", {}, a.status_code ? String(a.status_code) : "—"),
                  h("td", {}, a.error ? badge(a.error.replaceAll("_", " "), "bad") : badge("ok")),
                  h("td", {}, a.response_body ? h("pre", {}, a.response_body) : h("span", { class: "muted" }, "—")),
                ),
              )
            : [h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No attempt yet."))],
        ),
      );
      // A delivery still under way refreshes until it settles.
      if (!stopped && d.status === "pending") timer = setTimeout(load, 2000);
    } catch (e) {
      replace(body, errorBox(e));
    }
  };
  load();
  return {
    el,
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
