// The /v1 client: one credential per browser tab (sessionStorage, sent as
// a Bearer header, never in a URL or a cookie), JSON in and out, errors
// from the API's error envelope.

const STORAGE_KEY = "hookrelay.console.session";

/** An answer that was not 2xx, with the envelope's code, message and details. */
export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details || [];
  }
}

/** The signed-in credential: `{ key, kind }`, kind "device" or "admin". */
export const session = {
  get() {
    try {
      const v = JSON.parse(sessionStorage.getItem(STORAGE_KEY) || "null");
      return v && typeof v.key === "string" && (v.kind === "device" || v.kind === "admin") ? v : null;
    } catch {
      return null;
    }
  },
  set(key, kind) {
    sessionStorage.setItem(STORAGE_KEY, JSON.stringify({ key, kind }));
  },
  clear() {
    sessionStorage.removeItem(STORAGE_KEY);
  },
};

/** Calls the API; resolves to the JSON answer, rejects with an ApiError. */
export async function call(method, path, body, key) {
  const credential = key ?? session.get()?.key;
  const headers = { Accept: "application/json" };
  if (credential) headers.Authorization = `Bearer ${credential}`;
  const init = { method, headers, cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch {
    throw new ApiError(0, "NETWORK", "The server could not be reached. Check that hookrelay is running.");
  }
  const text = await resp.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!resp.ok) {
    // The signed-in credential stopped working (revoked, its app deleted):
    // sign the tab out. A late answer to a credential signed out since does not.
    if (resp.status === 401 && key === undefined && session.get()?.key === credential) {
      window.dispatchEvent(new Event("hookrelay:unauthorized"));
    }
    const e = json && json.error;
    const retry = resp.headers.get("retry-after");
    const message = e && e.message ? e.message : `${resp.status} ${resp.statusText}`;
    throw new ApiError(
      resp.status,
      (e && e.code) || `HTTP_${resp.status}`,
      retry && resp.status === 429 ? `${message} (try again in ${retry} s)` : message,
      e && e.details,
    );
  }
  return json;
}

/** Checks a pasted credential and finds its kind ("device" or "admin"). */
export async function identify(key) {
  return (await call("GET", "/v1/whoami", undefined, key)).kind;
}

/** Where the signed-in credential's webhooks live. */
export function webhookBase(kind) {
  return kind === "admin" ? "/v1/organization/webhooks" : "/v1/webhooks";
}

/** The event catalog, read once per page load. */
let catalog = null;
export async function eventTypes() {
  if (!catalog) catalog = (await call("GET", "/v1/event-types")).data;
  return catalog;
}

export function forgetCatalog() {
  catalog = null;
}
