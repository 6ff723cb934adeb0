/* The trust page: the pendant's CA fingerprint, as its web server reports it (/server.json),
 * to compare with what `pendant pair` printed on the pendant; and the name the page came by. */
"use strict";

(() => {
  const fingerprint = document.getElementById("fingerprint");
  document.getElementById("host").textContent = location.hostname;
  fetch("/server.json", { cache: "no-store" })
    .then((response) => (response.ok ? response.json() : Promise.reject(response.status)))
    .then((info) => {
      fingerprint.textContent = info.ca_sha256 || "(this pendant's web server has no CA to show)";
    })
    .catch(() => {
      fingerprint.textContent = "(the pendant did not answer: reload this page)";
    });
})();
