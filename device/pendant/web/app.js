/* The pendant's companion app: one page, served over https by the pendant's own web server
 * (pendant.webserver), talking MQTT to the pendant's mosquitto over wss:// (port `w`).
 *
 * Pairing: the link `https://<pendant>:<port>/#u=<user>&p=<password>&d=<device id>&w=<ws port>`
 * carries this phone's login in the fragment, which browsers never send to a server. It is
 * stored in localStorage and removed from the address bar at once.
 *
 * What the page shows is only what the pendant reports: the mute switches follow
 * `status.mic_muted` / `status.camera_muted`, never the tap. The feed (intents and
 * not-recognised events) lives in IndexedDB, keyed by event id, so QoS 1 duplicates collapse
 * and the last state is there with no connection.
 */
"use strict";

(() => {
  const PAIRING_KEY = "pendant.pairing";
  const STATE_KEY = "pendant.state";
  const FEED_MAX = 200;
  const DB_NAME = "pendant";
  const STORE = "feed";

  const $ = (id) => document.getElementById(id);
  const ui = {
    device: $("device"), link: $("link"), availability: $("availability"), battery: $("battery"),
    unpaired: $("unpaired"), stale: $("stale"), mic: $("mic"), camera: $("camera"),
    identify: $("identify"), capture: $("capture"), clear: $("clear"), feed: $("feed"),
    empty: $("empty"), sw: $("sw"), forget: $("forget"),
  };

  // --- pairing ---------------------------------------------------------------------------

  function pairingFromFragment() {
    if (!location.hash || location.hash.length < 2) return null;
    const params = new URLSearchParams(location.hash.slice(1));
    const u = params.get("u"), p = params.get("p"), d = params.get("d");
    // Optional: the MQTT WebSocket port, when the app is served from another port than the
    // broker's (default: this page's own origin, where mosquitto's http_dir serves it).
    const w = params.get("w");
    // Out of the address bar and the history, whatever it held.
    history.replaceState(null, "", location.pathname + location.search);
    if (!u || !p || !d || !/^[a-z0-9][a-z0-9-]{0,31}$/.test(d)) return null;
    if (w !== null && !/^[0-9]{1,5}$/.test(w)) return null;
    return w ? { u, p, d, w } : { u, p, d };
  }

  function loadJSON(key) {
    try {
      return JSON.parse(localStorage.getItem(key) || "null");
    } catch (_) {
      return null;
    }
  }

  const fresh = pairingFromFragment();
  if (fresh) localStorage.setItem(PAIRING_KEY, JSON.stringify(fresh));
  const pairing = fresh || loadJSON(PAIRING_KEY);
  const state = loadJSON(STATE_KEY) || {};
  if (pairing && state.device !== pairing.d) {
    // Another pendant: its last state is not this one's.
    for (const k of Object.keys(state)) delete state[k];
    state.device = pairing.d;
  }

  function saveState() {
    state.saved_ms = Date.now();
    localStorage.setItem(STATE_KEY, JSON.stringify(state));
  }

  // --- the feed, in IndexedDB ------------------------------------------------------------

  const dbReady = new Promise((resolve) => {
    if (!("indexedDB" in window)) return resolve(null);
    const req = indexedDB.open(DB_NAME, 1);
    req.onupgradeneeded = () => {
      const store = req.result.createObjectStore(STORE, { keyPath: "id" });
      store.createIndex("time", "timestamp_ms");
    };
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => resolve(null);
  });

  async function tx(mode, fn) {
    const db = await dbReady;
    if (!db) return null;
    return new Promise((resolve, reject) => {
      const t = db.transaction(STORE, mode);
      const result = fn(t.objectStore(STORE));
      t.oncomplete = () => resolve(result && "result" in result ? result.result : undefined);
      t.onerror = () => reject(t.error);
    });
  }

  const feedEvents = new Map();

  async function loadFeed() {
    const all = (await tx("readonly", (s) => s.getAll())) || [];
    for (const e of all) feedEvents.set(e.id, e);
    renderFeed();
  }

  async function addToFeed(event) {
    if (feedEvents.has(event.id)) return; // a QoS 1 duplicate
    feedEvents.set(event.id, event);
    const ordered = [...feedEvents.values()].sort((a, b) => a.timestamp_ms - b.timestamp_ms);
    const drop = ordered.slice(0, Math.max(0, ordered.length - FEED_MAX));
    for (const e of drop) feedEvents.delete(e.id);
    renderFeed();
    await tx("readwrite", (s) => {
      s.put(event);
      for (const e of drop) s.delete(e.id);
    });
  }

  async function clearFeed() {
    feedEvents.clear();
    renderFeed();
    await tx("readwrite", (s) => s.clear());
  }

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text; // never innerHTML: text from outside
    return node;
  }

  function timeOf(ms) {
    const d = new Date(ms);
    const sameDay = d.toDateString() === new Date().toDateString();
    return sameDay ? d.toLocaleTimeString() : d.toLocaleString();
  }

  function renderFeed() {
    const events = [...feedEvents.values()].sort((a, b) => b.timestamp_ms - a.timestamp_ms);
    ui.feed.replaceChildren(
      ...events.map((e) => {
        const li = el("li", `event ${e.type}`);
        li.dataset.type = e.type;
        const head = el("div", "head");
        const time = el("time", "time", timeOf(e.timestamp_ms));
        time.dateTime = new Date(e.timestamp_ms).toISOString();
        const title = e.type === "intent" ? e.name : e.type === "error" ? "Refused" : "Not understood";
        head.append(el("span", "name", title), time);
        li.append(head);
        const said = e.type === "error" ? e.reason : e.text;
        if (said) li.append(el("p", "text", e.type === "error" ? said : `“${said}”`));
        if (Array.isArray(e.slots) && e.slots.length) {
          const dl = el("dl", "slots");
          for (const s of e.slots) dl.append(el("dt", "", s.name), el("dd", "", String(s.value)));
          li.append(dl);
        }
        if (typeof e.confidence === "number" && e.type !== "error") {
          li.append(el("p", "confidence", `confidence ${Math.round(e.confidence * 100)} %`));
        }
        return li;
      }),
    );
    ui.empty.hidden = events.length > 0;
  }

  // --- device state ----------------------------------------------------------------------

  function setBadge(node, dataState, text) {
    node.dataset.state = dataState;
    node.textContent = text;
  }

  function renderState() {
    const a = state.availability;
    setBadge(ui.availability, a || "unknown", `pendant: ${a || "unknown"}`);
    const st = state.status || {};
    const pct = typeof st.battery_pct === "number" ? st.battery_pct : null;
    setBadge(
      ui.battery,
      pct === null ? "unknown" : pct <= 15 ? "low" : "ok",
      pct === null ? "battery: –" : `battery: ${pct} %`,
    );
    setSwitch(ui.mic, st.mic_muted);
    setSwitch(ui.camera, st.camera_muted);
  }

  function setSwitch(button, reported) {
    const known = typeof reported === "boolean";
    button.dataset.known = String(known);
    button.setAttribute("aria-checked", known && reported ? "true" : "false");
    button.dataset.pending = "false";
    button.title = known ? "" : "the pendant has not reported this yet";
  }

  function showStale(connected) {
    if (connected || !state.saved_ms) {
      ui.stale.hidden = true;
      return;
    }
    ui.stale.hidden = false;
    ui.stale.textContent = `Not connected: showing what the pendant last reported (${timeOf(
      state.saved_ms,
    )}).`;
  }

  // --- MQTT ------------------------------------------------------------------------------

  let client = null;
  let connected = false;

  function setLink(linkState, text) {
    setBadge(ui.link, linkState, text);
    connected = linkState === "connected";
    for (const b of [ui.mic, ui.camera, ui.identify]) b.disabled = !connected;
    showStale(connected);
  }

  function topicBase() {
    return `pendant/${pairing.d}`;
  }

  function onMessage(topic, payload) {
    const base = topicBase();
    const rest = topic.startsWith(base + "/") ? topic.slice(base.length + 1) : null;
    if (rest === null) return;
    const text = new TextDecoder().decode(payload);
    if (rest === "availability") {
      state.availability = text === "online" ? "online" : "offline";
      saveState();
      renderState();
      return;
    }
    let event;
    try {
      event = JSON.parse(text);
    } catch (_) {
      return;
    }
    if (!event || typeof event !== "object" || event.device_id !== pairing.d) return;
    if (rest === "status" && event.type === "status") {
      state.status = event;
      saveState();
      renderState();
    } else if (rest.startsWith("intent/") && event.type === "intent") {
      addToFeed(event);
    } else if (rest === "not_recognized" && event.type === "not_recognized") {
      addToFeed(event);
    } else if (rest === "error" && event.type === "error") {
      addToFeed(event);
    }
  }

  function connect() {
    setLink("connecting", "connecting…");
    // (hostname keeps an IPv6 address's brackets.)
    const host = pairing.w ? `${location.hostname}:${pairing.w}` : location.host;
    const url = `wss://${host}/mqtt`;
    client = mqtt.connect(url, {
      protocolVersion: 4,
      clientId: `${pairing.u}-${Math.random().toString(16).slice(2, 10)}`,
      username: pairing.u,
      password: pairing.p,
      clean: true,
      keepalive: 30,
      connectTimeout: 10_000,
      reconnectPeriod: 3_000,
    });
    client.on("connect", () => {
      setLink("connected", "connected");
      client.subscribe(`${topicBase()}/#`, { qos: 1 });
    });
    client.on("message", onMessage);
    client.on("reconnect", () => setLink("connecting", "reconnecting…"));
    client.on("offline", () => {
      if (ui.link.dataset.state !== "refused") setLink("disconnected", "disconnected");
    });
    client.on("close", () => {
      if (!["refused", "connecting"].includes(ui.link.dataset.state)) {
        setLink("disconnected", "disconnected");
      }
    });
    client.on("error", (err) => {
      // CONNACK 4 (bad user name or password) / 5 (not authorised): unpaired or revoked.
      if (err && (err.code === 4 || err.code === 5 || err.code === 134 || err.code === 135)) {
        client.end(true);
        setLink("refused", "refused: pair this phone again");
      }
    });
  }

  function send(command, body) {
    if (!client || !connected) return;
    client.publish(`${topicBase()}/cmd/${command}`, JSON.stringify(body), { qos: 1 });
  }

  function toggle(button, key) {
    button.addEventListener("click", () => {
      if (button.dataset.known !== "true" && key === "camera") {
        // Unknown camera state: ask to mute, the safe direction.
        send("mute", { camera: true });
      } else {
        send("mute", { [key]: button.getAttribute("aria-checked") !== "true" });
      }
      // The switch itself waits for the pendant's status.
      button.dataset.pending = "true";
    });
  }

  // --- start -----------------------------------------------------------------------------

  toggle(ui.mic, "mic");
  toggle(ui.camera, "camera");
  ui.identify.addEventListener("click", () => send("identify", {}));
  ui.capture.addEventListener("click", () => send("capture", {}));
  ui.clear.addEventListener("click", () => clearFeed());
  ui.forget.addEventListener("click", async () => {
    if (client) client.end(true);
    localStorage.removeItem(PAIRING_KEY);
    localStorage.removeItem(STATE_KEY);
    await clearFeed();
    location.reload();
  });

  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("sw.js").then(
      () => { ui.sw.textContent = "Works offline: the app is kept on this phone."; },
      (err) => {
        // Browsers only run a service worker served as JavaScript over https (mosquitto 2.0's
        // http_dir sent no Content-Type): without one the app works online only.
        ui.sw.textContent = "No offline copy: this pendant's web server cannot install one.";
        console.warn("service worker:", err && err.message);
      },
    );
  }

  renderState();
  loadFeed();
  if (!pairing) {
    ui.unpaired.hidden = false;
    setLink("idle", "not paired");
    return;
  }
  ui.device.textContent = pairing.d;
  document.title = `Pendant ${pairing.d}`;
  ui.forget.hidden = false;
  if (typeof mqtt === "undefined") {
    setLink("disconnected", "offline");
    return;
  }
  connect();
})();
