/* The app shell, kept on the phone so the app opens with no connection (it then shows the
 * last state it stored). Network first, so an updated pendant serves its new app; the cache
 * only answers when the pendant is out of reach. Nothing but these files is cached: MQTT
 * goes over the WebSocket, which service workers never see. */
"use strict";
const CACHE = "pendant-shell-v4";
const SHELL = [
  "./", "index.html", "app.js", "style.css", "mqtt.min.js", "manifest.webmanifest",
  "icon.svg", "icon-192.png", "icon-512.png", "trust.html", "trust.js",
];
// What the pendant says now, never a stored copy: the pairing door (its page carries a
// one-time login), the CA (a stale one after a renewal would be trusted in vain) and
// /server.json (the app asks it whether the broker runs).
const NETWORK_ONLY = new Set(["/pair", "/ca.crt", "/server.json"]);

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((c) => c.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== self.location.origin) return;
  if (NETWORK_ONLY.has(url.pathname)) return;
  event.respondWith(
    fetch(event.request)
      .then((response) => {
        if (response.ok) {
          const copy = response.clone();
          caches.open(CACHE).then((c) => c.put(event.request, copy));
        }
        return response;
      })
      .catch(() => caches.match(event.request, { ignoreSearch: true })
        .then((hit) => hit || caches.match("index.html"))),
  );
});
