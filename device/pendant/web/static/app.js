/* The pendant's companion app: one page, served over https by the pendant's own web server
 * (pendant.web.server), talking MQTT to the pendant's mosquitto over wss:// (port `w`).
 *
 * Pairing: the link `https://<pendant>:<port>/#u=<user>&p=<password>&d=<device id>&w=<ws port>`
 * carries this phone's login in the fragment, which browsers never send to a server. It is
 * stored in localStorage and removed from the address bar at once.
 *
 * What the page shows is only what the pendant reports: the mute switches follow
 * `status.mic_muted` / `status.camera_muted`, never the tap. The feed (intents, not-recognised
 * events, errors, the scenes the camera read: text and a face count, never a picture, and the
 * messages sent to the wearer) lives in IndexedDB, keyed by event id, so QoS 1 duplicates
 * collapse and the last state is there with no connection.
 *
 * Messages: a `say` command (Home Assistant's answer, say) reaches the phones as the link's
 * `say` event; the page speaks it with the browser's speech synthesis, once, as it arrives
 * (never from the stored feed), and shows it in the feed, so a muted phone still has it.
 * An `answer` (what Home Assistant's agent or the wearer's own model said to a question the
 * pendant could not hear itself) is spoken and shown the same way, with the question as it was
 * sent: all that left the device for it.
 *
 * A phone that does not trust the pendant's certificate yet: browsers never tell a page why
 * its WebSocket failed, so the app infers it. When the MQTT WebSocket has failed
 * `FAILS_BEFORE_ASKING` times in a row without opening, it asks the pendant's web server
 * (`/server.json`, over the connection this page came by) whether the broker runs: if the
 * server answers and the broker runs, the likeliest cause is the certificate (most browsers
 * let a page through past their warning, not its WebSocket), and the app says so and links
 * the trust page (`trust.html`); if the broker is down it says that; if nothing answers, the
 * pendant is out of reach and "reconnecting…" is the truth. It keeps trying all along.
 *
 * "My sentences" edits the wearer's own intents: it shows the sets the pendant reports
 * (`sentences`, retained), sends the whole list as `cmd/sentences`, and shows the pendant's
 * answer (the next `sentences` event: accepted, or refused with the error) or the link's
 * `error` for a command it could not read. Only the obvious shape is checked here; the
 * pendant is the judge. Its `warnings` (a sentence it cannot hear, or hears as another intent)
 * stand under the sentence they are about, while that line is in the editor. The draft is
 * kept on the phone, so it survives a reload offline.
 *
 * "My voice" (issue 19, `[speaker]`): the names of the voices the pendant obeys (`voices`,
 * retained), whether the check is in force, and enrolment: a name, then the pendant's ears
 * take the next five utterances as that voice's (`cmd/voice` `enrol`) while the page shows
 * five sentences to read and the count the pendant reports; `done` / `cancel`; `forget` per
 * name. The voiceprint never comes here: only names and counts.
 */
"use strict";

(() => {
  const PAIRING_KEY = "pendant.pairing";
  const STATE_KEY = "pendant.state";
  const FEED_MAX = 200;
  const ANSWER_TITLES = {
    answered: "Answer",
    acted: "Done",
    no_answer: "No answer",
    refused: "Could not do it",
    failed: "Could not ask",
  };
  const TARGET_NAMES = { home_assistant: "Home Assistant", openai: "your assistant" };
  const DB_NAME = "pendant";
  const STORE = "feed";
  // What the pendant takes (pendant.core.events.SentenceSet, pendant.link.commands).
  const INTENT_RE = /^[A-Z][A-Za-z0-9]{0,47}$/;
  const MAX_SETS = 20;
  const MAX_SENTENCES = 20;
  const MAX_SENTENCE_CHARS = 200;
  const MAX_SENTENCES_BYTES = 4096;
  // A Pi Zero 2 W rebuilds its grammar in seconds; past this the wearer may send again.
  const ANSWER_WAIT_MS = 30_000;
  // What the pendant takes as a voice's name (pendant.core.events.VoiceName).
  const VOICE_RE = /^[A-Za-z][A-Za-z0-9 _'-]{0,31}$/;
  // Plain sentences, no commands: the ears act on none of them while enrolling anyway.
  const ENROL_SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "I would like a cup of tea with a slice of lemon, please.",
    "Tomorrow morning we are going for a long walk by the river.",
    "My favourite colours are green, blue and a warm shade of orange.",
    "Please remind me to call my sister after dinner tonight.",
  ];
  const VOICE_PROBLEMS = {
    too_little_speech: "Too little speech to keep: say the sentence again, a little longer.",
    not_one_voice:
      "The sentences did not sound like one voice: enrol again, alone and somewhere quieter.",
    too_many_voices: "The pendant knows eight voices already: forget one first.",
    unknown_voice: "The pendant does not know that voice.",
    not_saved: "The pendant could not keep the voice.",
    unreadable: "The pendant's voices file is broken: forget all voices, then enrol again.",
    timeout: "Nothing heard for two minutes: enrolment stopped.",
    no_encoder: "The pendant has no voice model (pendant models fetch ge2e-voice).",
    tap_to_confirm: "Tap the pendant to confirm: another voice would be obeyed.",
    not_confirmed: "Not done: the pendant was not tapped.",
  };
  // Failed WebSocket attempts in a row (none opened) before the app asks why (see the top).
  const FAILS_BEFORE_ASKING = 3;

  const $ = (id) => document.getElementById(id);
  const ui = {
    device: $("device"), link: $("link"), availability: $("availability"), battery: $("battery"),
    unpaired: $("unpaired"), stale: $("stale"), mic: $("mic"), camera: $("camera"),
    identify: $("identify"), capture: $("capture"), captureState: $("capture-state"),
    clear: $("clear"), feed: $("feed"), empty: $("empty"), sw: $("sw"), forget: $("forget"),
    sentencesForm: $("sentences-form"), sets: $("sets"), addSet: $("add-set"),
    sendSentences: $("send-sentences"), revertSentences: $("revert-sentences"),
    sentencesRunning: $("sentences-running"), sentencesAnswer: $("sentences-answer"),
    sentencesCount: $("sentences-count"), sentencesDetails: $("sentences-details"),
    trustProblem: $("trust-problem"),
    voicesState: $("voices-state"), voices: $("voices"), voicesCount: $("voices-count"),
    enrolForm: $("enrol-form"), voiceName: $("voice-name"), enrolStart: $("enrol-start"),
    enrolling: $("enrolling"), enrolSentences: $("enrol-sentences"),
    enrolProgress: $("enrol-progress"), enrolDone: $("enrol-done"),
    enrolCancel: $("enrol-cancel"), voicesAnswer: $("voices-answer"),
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

  /** `reported`: what the pendant said (its time shows when offline), not the wearer's edit. */
  function saveState(reported = true) {
    if (reported) state.saved_ms = Date.now();
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

  /** Keeps `event` in the feed; false if it was there already (a QoS 1 duplicate). */
  async function addToFeed(event) {
    if (feedEvents.has(event.id)) return false;
    feedEvents.set(event.id, event);
    const ordered = [...feedEvents.values()].sort((a, b) => a.timestamp_ms - b.timestamp_ms);
    const drop = ordered.slice(0, Math.max(0, ordered.length - FEED_MAX));
    for (const e of drop) feedEvents.delete(e.id);
    renderFeed();
    await tx("readwrite", (s) => {
      s.put(event);
      for (const e of drop) s.delete(e.id);
    });
    return true;
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

  function plural(n, one, many) {
    return `${n} ${n === 1 ? one : many}`;
  }

  const EYES_INTENTS = new Set(["ReadText", "SeenObjects"]);
  const SCENE_TITLES = {
    what_is_this: "Seen",
    read_this: "Read for you",
    capture: "Read for you",
    button: "Read for you",
  };

  function renderFeed() {
    const events = [...feedEvents.values()].sort((a, b) => b.timestamp_ms - a.timestamp_ms);
    // The eyes answer a capture with a scene and an intent of the same session: one entry,
    // titled by the intent. (A spoken "read this" before them, same session, stays its own.)
    const scenes = new Set(events.filter((e) => e.type === "scene").map((e) => e.session_id));
    const answered = new Map();
    for (const e of events) {
      if (e.type === "intent" && EYES_INTENTS.has(e.name) && scenes.has(e.session_id)) {
        answered.set(e.session_id, e);
      }
    }
    // Held talk that became a question (issue 18) says "not recognised" first, under the
    // question's session: once the answer is there, it says all of it.
    const asked = new Set(events.filter((e) => e.type === "answer").map((e) => e.session_id));
    const shown = events.filter(
      (e) =>
        !(e.type === "intent" && answered.get(e.session_id) === e) &&
        !(e.type === "not_recognized" && asked.has(e.session_id)),
    );
    ui.feed.replaceChildren(...shown.map((e) => feedItem(e, answered.get(e.session_id))));
    ui.empty.hidden = shown.length > 0;
  }

  function feedItem(e, intent) {
    const li = el("li", `event ${e.type}`);
    li.dataset.type = e.type;
    const head = el("div", "head");
    const time = el("time", "time", timeOf(e.timestamp_ms));
    time.dateTime = new Date(e.timestamp_ms).toISOString();
    let title;
    if (e.type === "intent") title = e.name;
    else if (e.type === "error") title = "Refused";
    else if (e.type === "scene") title = intent ? intent.name : SCENE_TITLES[e.trigger] || "Seen";
    else if (e.type === "say") title = "Message";
    else if (e.type === "answer") title = ANSWER_TITLES[e.outcome] || "Answer";
    else if (e.reason === "not_your_voice") title = "Not your voice";
    else title = "Not understood";
    head.append(el("span", "name", title), time);
    li.append(head);
    if (e.type === "scene") {
      li.dataset.trigger = e.trigger;
      if (e.text) li.append(el("p", "text read", e.text));
      else if (e.trigger !== "what_is_this") li.append(el("p", "text none", "No text found."));
      if (Array.isArray(e.labels) && e.labels.length) {
        const labels = e.labels.map((l) => `${l.name} ${Math.round(l.score * 100)} %`).join(", ");
        li.append(el("p", "labels", labels));
      }
      if (e.face_count > 0) {
        li.append(el("p", "faces", `${plural(e.face_count, "face", "faces")} hidden`));
      }
      return li;
    }
    if (e.type === "answer") {
      li.dataset.outcome = e.outcome;
      const to = TARGET_NAMES[e.target] || "your assistant";
      li.append(el("p", "question", `You asked ${to}: “${e.question}”`));
      if (typeof e.context === "string") li.append(el("p", "context", `and sent: ${e.context}`));
      if (e.text) li.append(el("p", "text", e.text));
      return li;
    }
    const said = e.type === "error" ? e.reason : e.text;
    if (said) li.append(el("p", "text", e.type === "error" ? said : `“${said}”`));
    // (ReadText's one slot is its text again.)
    const slots = Array.isArray(e.slots) ? e.slots.filter((s) => String(s.value) !== e.text) : [];
    if (slots.length) {
      const dl = el("dl", "slots");
      for (const s of slots) dl.append(el("dt", "", s.name), el("dd", "", String(s.value)));
      li.append(dl);
    }
    if (typeof e.confidence === "number" && e.type !== "error") {
      li.append(el("p", "confidence", `confidence ${Math.round(e.confidence * 100)} %`));
    }
    return li;
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
    renderControls();
  }

  function cameraMuted() {
    return (state.status || {}).camera_muted === true;
  }

  /** What may be pressed now: commands need a connection (and "Read this" a camera on). */
  function renderControls() {
    for (const b of [ui.mic, ui.camera, ui.identify]) b.disabled = !connected;
    ui.capture.disabled = !connected || cameraMuted();
    ui.capture.title = cameraMuted() ? "the camera is muted" : "";
    renderVoiceControls();
    if (cameraMuted() && !captureTimer) ui.captureState.textContent = "The camera is muted.";
    else if (!cameraMuted() && ui.captureState.textContent === "The camera is muted.") {
      ui.captureState.textContent = "";
    }
    renderSendable();
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

  // --- my sentences ----------------------------------------------------------------------

  // state.sentences: the pendant's last `sentences` event (what it runs); state.draft: the
  // wearer's unsent edit, [{intent, text}] with one sentence a line, or absent.
  // {timer, late}: a `sentences` command sent, its answer not in yet (late: past the wait,
  // so sending again is allowed; a late answer still counts).
  let awaiting = null;
  let captureTimer = null;

  function deviceSets() {
    return (state.sentences && state.sentences.sets) || [];
  }

  function draftOf(sets) {
    return sets.map((s) => ({ intent: s.intent, text: s.sentences.join("\n") }));
  }

  function currentDraft() {
    return state.draft || draftOf(deviceSets());
  }

  function editDraft(fn) {
    const draft = currentDraft().map((d) => ({ ...d }));
    fn(draft);
    state.draft = draft;
    saveState(false);
  }

  function renderSentences() {
    const known = Boolean(state.sentences);
    const sets = deviceSets();
    const names = sets.map((s) => s.intent).join(", ");
    let running = !known
      ? "The pendant has not said which sentences it runs yet."
      : sets.length
        ? `The pendant runs: ${names}.`
        : "The pendant runs none of your own sentences yet.";
    if (known && !connected) running += " (last known)";
    ui.sentencesRunning.textContent = running;
    ui.sentencesCount.textContent = known ? `(${sets.length})` : "";
    renderSendable();
  }

  function renderSendable() {
    ui.sendSentences.disabled = !connected || (awaiting !== null && !awaiting.late);
    ui.sendSentences.title = connected ? "" : "not connected to the pendant";
    ui.revertSentences.disabled = !state.draft;
    ui.addSet.disabled = currentDraft().length >= MAX_SETS;
  }

  /** The list of intents to edit, built afresh (only on add, remove, undo and new sets). */
  function renderSets() {
    const draft = currentDraft();
    ui.sets.replaceChildren(
      ...draft.map((d, i) => {
        const li = el("li", "set");
        const intent = el("input", "intent");
        Object.assign(intent, {
          type: "text", value: d.intent, maxLength: 48, autocomplete: "off",
          spellcheck: false, placeholder: "PartyMode",
        });
        intent.setAttribute("autocapitalize", "none");
        const text = el("textarea", "sentences");
        Object.assign(text, {
          value: d.text, rows: 3, spellcheck: false, placeholder: "[it's] party time",
        });
        const problem = el("p", "problem");
        problem.id = `set-problem-${i}`;
        problem.hidden = true;
        const warnings = el("ul", "warnings");
        warnings.id = `set-warnings-${i}`;
        intent.setAttribute("aria-describedby", problem.id);
        text.setAttribute("aria-describedby", `${problem.id} ${warnings.id}`);
        const intentLabel = el("label", "field");
        intentLabel.append(el("span", "", "Intent name"), intent);
        const textLabel = el("label", "field");
        textLabel.append(el("span", "", "Sentences, one a line"), text);
        const remove = el("button", "quiet remove", "Remove");
        remove.type = "button";
        remove.setAttribute("aria-label", `Remove ${d.intent || "this intent"}`);
        intent.addEventListener("input", () => {
          editDraft((dr) => { dr[i].intent = intent.value; });
          remove.setAttribute("aria-label", `Remove ${intent.value || "this intent"}`);
          clearProblem(li);
          renderWarnings(warnings, currentDraft()[i]);
          renderSendable();
        });
        text.addEventListener("input", () => {
          editDraft((dr) => { dr[i].text = text.value; });
          clearProblem(li);
          renderWarnings(warnings, currentDraft()[i]);
          renderSendable();
        });
        remove.addEventListener("click", () => {
          editDraft((dr) => { dr.splice(i, 1); });
          renderSets();
          renderSendable();
          ui.addSet.focus();
        });
        renderWarnings(warnings, d);
        li.append(intentLabel, textLabel, warnings, problem, remove);
        return li;
      }),
    );
    if (!draft.length) ui.sets.append(el("li", "note none", "No intents of your own."));
  }

  /** The pendant's warnings about the sentences of this set that are still in the editor. */
  function warningsOf(d) {
    const all = (state.sentences && state.sentences.warnings) || [];
    const lines = new Set(sentencesOf(d.text));
    return all.filter((w) => w.intent === d.intent.trim() && lines.has(w.sentence));
  }

  function renderWarnings(list, d) {
    list.replaceChildren(
      ...warningsOf(d).map((w) => {
        const item = el("li", "warning");
        item.append(el("code", "", w.sentence), el("span", "", `: ${w.reason}`));
        return item;
      }),
    );
    list.hidden = !list.childElementCount;
  }

  function refreshWarnings() {
    const draft = currentDraft();
    ui.sets.querySelectorAll("li.set").forEach((li, i) => {
      renderWarnings(li.querySelector(".warnings"), draft[i]);
    });
  }

  function clearProblem(li) {
    const p = li.querySelector(".problem");
    p.hidden = true;
    p.textContent = "";
    for (const f of li.querySelectorAll("input, textarea")) f.removeAttribute("aria-invalid");
  }

  function sentencesOf(text) {
    return text.split("\n").map((l) => l.trim()).filter((l) => l.length > 0);
  }

  /** The obvious mistakes, per set: [index, field, message]. The pendant checks the rest. */
  function problemsOf(draft) {
    const problems = [];
    draft.forEach((d, i) => {
      const lines = sentencesOf(d.text);
      if (!INTENT_RE.test(d.intent.trim())) {
        const like = "The name must be like PartyMode: a capital, then letters and digits";
        problems.push([i, "intent", `${like} (at most 48).`]);
      } else if (!lines.length) {
        problems.push([i, "sentences", "Give at least one sentence."]);
      } else if (lines.length > MAX_SENTENCES) {
        problems.push([i, "sentences", `At most ${MAX_SENTENCES} sentences an intent.`]);
      } else if (lines.some((l) => l.length > MAX_SENTENCE_CHARS)) {
        problems.push([i, "sentences", `A sentence is at most ${MAX_SENTENCE_CHARS} characters.`]);
      } else if (lines.some((l) => /[\u0000-\u001f\u007f]/.test(l))) {
        problems.push([i, "sentences", "A sentence holds a control character."]);
      }
    });
    return problems;
  }

  function answer(answerState, text) {
    ui.sentencesAnswer.dataset.state = answerState;
    ui.sentencesAnswer.textContent = text;
  }

  function sendSentences() {
    if (!connected || (awaiting && !awaiting.late)) return;
    const draft = currentDraft();
    for (const li of ui.sets.querySelectorAll("li.set")) clearProblem(li);
    const problems = problemsOf(draft);
    if (problems.length) {
      const items = ui.sets.querySelectorAll("li.set");
      const fieldOf = (i, f) => items[i].querySelector(f === "intent" ? "input" : "textarea");
      for (const [i, field, message] of problems) {
        const p = items[i].querySelector(".problem");
        p.textContent = message;
        p.hidden = false;
        fieldOf(i, field).setAttribute("aria-invalid", "true");
      }
      fieldOf(problems[0][0], problems[0][1]).focus();
      answer("invalid", "Not sent: fix the marked intents first.");
      return;
    }
    if (draft.length > MAX_SETS) {
      answer("invalid", `Not sent: at most ${MAX_SETS} intents.`);
      return;
    }
    const sets = draft.map((d) => ({ intent: d.intent.trim(), sentences: sentencesOf(d.text) }));
    const body = { sentences: sets };
    const bytes = new TextEncoder().encode(JSON.stringify(body)).length;
    if (bytes > MAX_SENTENCES_BYTES) {
      answer("invalid", `Not sent: ${bytes} bytes; the pendant takes ${MAX_SENTENCES_BYTES}.`);
      return;
    }
    stopAwaiting();
    send("sentences", body);
    answer("pending", "Sent: waiting for the pendant to check them…");
    const waiting = { late: false };
    waiting.timer = setTimeout(() => {
      waiting.late = true;
      answer("pending", "No answer from the pendant yet: it may still be checking, or be off.");
      renderSendable();
    }, ANSWER_WAIT_MS);
    awaiting = waiting;
    renderSendable();
  }

  function stopAwaiting() {
    if (!awaiting) return false;
    clearTimeout(awaiting.timer);
    awaiting = null;
    return true;
  }

  /** The pendant's `sentences` event: retained on subscribe, or its answer to a command. */
  function onSentences(event, retained) {
    const warnings = Array.isArray(event.warnings) ? event.warnings : [];
    state.sentences = {
      sets: event.sets,
      accepted: event.accepted !== false,
      error: event.error || null,
      warnings,
      timestamp_ms: event.timestamp_ms,
    };
    const mine = !retained && stopAwaiting();
    const names = event.sets.map((s) => s.intent).join(", ");
    if (mine && event.accepted !== false) {
      delete state.draft; // now the pendant's own
      const some = warnings.length === 1 ? "1 sentence" : `${warnings.length} sentences`;
      const heed = warnings.length ? ` ${some} may not work as you mean: see the marks.` : "";
      answer(
        "accepted",
        names
          ? `Accepted: the pendant now understands ${names}.${heed}`
          : "Accepted: the pendant runs none of your own sentences now.",
      );
    } else if (mine) {
      answer("refused", `Refused: ${event.error || "no reason given"}`);
    }
    saveState();
    renderSentences();
    if (!state.draft) renderSets(); // (an edit in progress is kept)
    else refreshWarnings();
  }

  /** The link's `error` event about sentences: a `sentences` command it could not read never
   * reached the ears, or (unasked) the pendant runs sets the link has no record of. */
  function onError(event) {
    if (event.command !== "sentences") return;
    if (stopAwaiting()) answer("refused", `Refused: ${event.reason}`);
    else answer("refused", `The pendant says: ${event.reason}`);
    renderSendable();
  }

  // --- messages for the wearer ------------------------------------------------------------

  /** Speaks `text` with the browser's voice, if it has one. The latest message is the one to
   * hear: one still being spoken gives way. (Browsers may refuse to speak on a page nobody
   * has touched yet; the feed shows the message all the same.) */
  function speak(text) {
    const synth = window.speechSynthesis;
    if (!synth || typeof SpeechSynthesisUtterance === "undefined") return;
    synth.cancel();
    const utterance = new SpeechSynthesisUtterance(text);
    utterance.onerror = (ev) => console.warn("speech:", ev.error);
    synth.speak(utterance);
  }

  async function onSay(event) {
    if ((await addToFeed(event)) && event.text) speak(event.text);
  }

  // --- MQTT ------------------------------------------------------------------------------

  let client = null;
  let connected = false;
  // This attempt's WebSocket opened (a CONNACK came, even a refusal); attempts in a row that
  // did not; what the pendant's web server last said the broker's trouble is.
  let opened = false;
  let failedInARow = 0;
  let trouble = null; // null | "untrusted" | "broker-down"

  function setLink(linkState, text) {
    setBadge(ui.link, linkState, text);
    connected = linkState === "connected";
    renderControls();
    renderSentences();
    showStale(connected);
  }

  // --- my voice --------------------------------------------------------------------------

  /** What the wearer is told when the pendant kept their voice without some sentences. */
  function leftOut(n) {
    const which = n === 1 ? "One sentence" : `${n} sentences`;
    return `Kept. ${which} did not sound like the others and ${n === 1 ? "was" : "were"} left out: enrol again, alone, if you were not.`;
  }

  /** The pendant's `voices` event: retained on subscribe, and after every `voice` command. */
  function onVoices(event, retained) {
    state.voices = {
      names: event.names,
      check: event.check,
      in_force: event.in_force === true,
      enrolling: typeof event.enrolling === "string" ? event.enrolling : null,
      heard: Number.isInteger(event.heard) ? event.heard : 0,
      needed: Number.isInteger(event.needed) ? event.needed : ENROL_SENTENCES.length,
    };
    // The event stays retained: what was left out is said when it happens, not at every visit.
    const leftOutNow = !retained && Number.isInteger(event.left_out) && event.left_out > 0;
    ui.voicesAnswer.textContent =
      VOICE_PROBLEMS[event.problem] || (leftOutNow ? leftOut(event.left_out) : "");
    saveState();
    renderVoices();
  }

  function renderVoices() {
    const v = state.voices;
    ui.voicesCount.textContent = v ? `(${v.names.length})` : "";
    if (!v) ui.voicesState.textContent = "The pendant has not said which voices it knows yet.";
    else if (v.check === "off") {
      ui.voicesState.textContent = "The voice check is off (speaker.check): everyone is heard.";
    } else if (!v.in_force) {
      ui.voicesState.textContent = "Anyone's commands are heard: enrol your voice.";
    } else {
      const when = v.check === "always" ? "always" : "in conversation (a press is yours)";
      ui.voicesState.textContent = `Only these voices are obeyed, ${when}:`;
    }
    ui.voices.replaceChildren(
      ...((v && v.names) || []).map((name) => {
        const li = el("li", "voice");
        li.append(el("span", "name", name));
        const forget = el("button", "quiet forget-voice", "Forget");
        forget.type = "button";
        forget.dataset.voice = name;
        forget.addEventListener("click", () => send("voice", { action: "forget", voice: name }));
        li.append(forget);
        return li;
      }),
    );
    const enrolling = v && v.enrolling;
    ui.enrolling.hidden = !enrolling;
    ui.enrolForm.hidden = Boolean(enrolling);
    if (enrolling) {
      ui.enrolSentences.replaceChildren(
        ...ENROL_SENTENCES.map((text, i) => {
          const li = el("li", i < v.heard ? "said" : "", text);
          if (i === v.heard) li.setAttribute("aria-current", "step");
          return li;
        }),
      );
      ui.enrolProgress.textContent = `${enrolling}: ${v.heard} of ${v.needed} heard`;
    }
    renderVoiceControls();
  }

  function renderVoiceControls() {
    const name = ui.voiceName.value.trim();
    ui.enrolStart.disabled = !connected || !VOICE_RE.test(name);
    ui.enrolDone.disabled = !connected;
    ui.enrolCancel.disabled = !connected;
    for (const b of ui.voices.querySelectorAll("button")) b.disabled = !connected;
  }

  function topicBase() {
    return `pendant/${pairing.d}`;
  }

  function onMessage(topic, payload, packet) {
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
      onError(event);
    } else if (rest === "scene" && event.type === "scene") {
      addToFeed(event);
      if (captureTimer) {
        clearTimeout(captureTimer);
        captureTimer = null;
        ui.captureState.textContent = "";
      }
    } else if (rest === "say" && event.type === "say" && typeof event.text === "string") {
      onSay(event);
    } else if (
      rest === "answer" &&
      event.type === "answer" &&
      typeof event.text === "string" &&
      typeof event.question === "string"
    ) {
      onSay(event);
    } else if (rest === "sentences" && event.type === "sentences" && Array.isArray(event.sets)) {
      onSentences(event, Boolean(packet && packet.retain));
    } else if (rest === "voices" && event.type === "voices" && Array.isArray(event.names)) {
      onVoices(event, Boolean(packet && packet.retain));
    }
  }

  function setTrouble(kind) {
    const was = trouble;
    trouble = kind;
    ui.trustProblem.hidden = kind !== "untrusted";
    if (!connected && kind !== was) showRetrying();
  }

  /** While it retries: what is known of why it fails. */
  function showRetrying() {
    if (trouble === "untrusted") {
      setLink("untrusted", "certificate not trusted");
    } else if (trouble === "broker-down") {
      setLink("connecting", "pendant's broker is down: retrying…");
    } else {
      setLink("connecting", "reconnecting…");
    }
  }

  /** The WebSocket failed again and again: ask the pendant's web server whether its broker
   * runs. It answering at all means the pendant is reachable over this very connection. */
  async function askWhy() {
    let info = null;
    try {
      const response = await fetch("/server.json", { cache: "no-store" });
      if (response.ok) info = await response.json();
    } catch (_) {
      info = null; // out of reach: nothing more to say than "reconnecting…"
    }
    if (connected) return;
    if (!info) setTrouble(null); // what it said before may no longer hold
    else if (info.broker === "down") setTrouble("broker-down");
    else setTrouble("untrusted"); // "up", or a server that cannot tell (no bus)
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
      opened = true;
      failedInARow = 0;
      setLink("connected", "connected");
      setTrouble(null);
      client.subscribe(`${topicBase()}/#`, { qos: 1 });
    });
    client.on("message", onMessage);
    client.on("reconnect", () => {
      opened = false;
      showRetrying();
    });
    client.on("offline", () => {
      if (!["refused", "untrusted"].includes(ui.link.dataset.state)) {
        setLink("disconnected", "disconnected");
      }
    });
    client.on("close", () => {
      if (!opened && ui.link.dataset.state !== "refused") {
        failedInARow += 1;
        if (failedInARow % FAILS_BEFORE_ASKING === 0) askWhy();
      }
      if (!["refused", "connecting", "untrusted"].includes(ui.link.dataset.state)) {
        setLink("disconnected", "disconnected");
      }
    });
    client.on("error", (err) => {
      // CONNACK 4 (bad user name or password) / 5 (not authorised): unpaired or revoked.
      if (err && (err.code === 4 || err.code === 5 || err.code === 134 || err.code === 135)) {
        opened = true; // the broker answered: TLS and the certificate were fine
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
  ui.capture.addEventListener("click", () => {
    send("capture", {});
    ui.captureState.textContent = "Asked the pendant to read what it sees…";
    clearTimeout(captureTimer);
    captureTimer = setTimeout(() => {
      captureTimer = null;
      ui.captureState.textContent = "No answer from the camera.";
    }, ANSWER_WAIT_MS);
  });
  ui.enrolForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const name = ui.voiceName.value.trim();
    if (!VOICE_RE.test(name)) return;
    ui.voicesAnswer.textContent = "";
    send("voice", { action: "enrol", voice: name });
  });
  ui.voiceName.addEventListener("input", renderVoiceControls);
  ui.enrolDone.addEventListener("click", () => send("voice", { action: "done" }));
  ui.enrolCancel.addEventListener("click", () => send("voice", { action: "cancel" }));
  ui.sentencesForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    sendSentences();
  });
  ui.addSet.addEventListener("click", () => {
    editDraft((dr) => { dr.push({ intent: "", text: "" }); });
    renderSets();
    renderSendable();
    const inputs = ui.sets.querySelectorAll("input.intent");
    inputs[inputs.length - 1].focus();
  });
  ui.sentencesDetails.open = Boolean(state.editor_open);
  ui.sentencesDetails.addEventListener("toggle", () => {
    state.editor_open = ui.sentencesDetails.open;
    saveState(false);
  });
  ui.revertSentences.addEventListener("click", () => {
    delete state.draft;
    saveState(false);
    renderSets();
    renderSendable();
    answer("none", "");
  });
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
  renderSentences();
  renderVoices();
  renderSets();
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
