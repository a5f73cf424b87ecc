/* The simulator page's service worker (registered only while `sw_caches_refusal` is on, by the
 * unsupported-browser page). It models what whatsapp-web.js PR #1518 ran into: once the refusal was shown,
 * the worker answers every later navigation of the origin with the cached refusal, whatever User-Agent the
 * browser has now, until the profile's "Service Worker" data is deleted. It never asks the server again.
 */
'use strict';

var CACHE = 'wa-unsupported-browser';
var REFUSAL = '/__sim/refused.html?via=service-worker';

self.addEventListener('install', function (event) {
  event.waitUntil(caches.open(CACHE).then(function (cache) { return cache.add(REFUSAL); })
    .then(function () { return self.skipWaiting(); }));
});

self.addEventListener('activate', function (event) {
  event.waitUntil(self.clients.claim());
});

self.addEventListener('fetch', function (event) {
  if (event.request.mode !== 'navigate') return;  // the app's API calls go to the network
  event.respondWith(caches.match(REFUSAL).then(function (cached) { return cached || fetch(event.request); }));
});
