// kyu web page script: shows times in the viewer's local time with its zone (UTC
// stays in the tooltip), asks before destructive actions, checks the enqueue form's payload is a JSON
// object before sending, and reloads a job's card every 2 s until the job is final.
// It talks only to kyu (the Content-Security-Policy allows nothing else).
(function () {
  'use strict';

  function localize(root) {
    root.querySelectorAll('time[datetime]').forEach(function (t) {
      var d = new Date(t.getAttribute('datetime'));
      if (!isNaN(d.getTime())) {
        // With the zone (e.g. "GMT+9"), so a time is never read in the wrong one.
        t.textContent = d.toLocaleString(undefined, { timeZoneName: 'short' });
      }
    });
  }

  // The enqueue form's payload: empty (= {}) or a JSON object.
  function payloadError(text) {
    if (text.trim() === '') return null;
    var v;
    try {
      v = JSON.parse(text);
    } catch (e) {
      return 'Not valid JSON: ' + e.message;
    }
    if (v === null || typeof v !== 'object' || Array.isArray(v)) {
      return 'The payload must be a JSON object, like {"message": "hi"}.';
    }
    return null;
  }

  function checkPayload(area) {
    var msg = payloadError(area.value);
    var out = document.getElementById('payload-error');
    area.setAttribute('aria-invalid', msg ? 'true' : 'false');
    if (out) {
      out.textContent = msg || '';
      out.hidden = !msg;
    }
    return !msg;
  }

  document.addEventListener('submit', function (ev) {
    var form = ev.target;
    var area = form.querySelector('textarea[name="payload"]');
    if (area && !checkPayload(area)) {
      ev.preventDefault();
      area.focus();
      return;
    }
    var ask = form.getAttribute('data-confirm');
    if (ask && !window.confirm(ask)) {
      ev.preventDefault();
    }
  });

  document.addEventListener('input', function (ev) {
    if (ev.target.matches && ev.target.matches('textarea[name="payload"]')) {
      checkPayload(ev.target);
    }
  });

  // The live job card: fetch the fragment, replace only the parts that changed (so a
  // button is not swapped under the pointer), stop once the job is final.
  function live(box) {
    var url = box.getAttribute('data-live');
    var card = box.querySelector('.jobcard');
    if (!url || !card) return;
    var parts = Array.prototype.map.call(card.children, function (c) { return c.outerHTML; });
    localize(card);

    function apply(html) {
      var tpl = document.createElement('template');
      tpl.innerHTML = html;
      var fresh = tpl.content.querySelector('.jobcard');
      if (!fresh) return false;
      var kids = Array.prototype.slice.call(fresh.children);
      var now = kids.map(function (c) { return c.outerHTML; });
      if (now.length !== card.children.length) {
        box.replaceChild(fresh, card);
        card = fresh;
        localize(card);
      } else {
        kids.forEach(function (kid, i) {
          if (now[i] !== parts[i]) {
            card.replaceChild(kid, card.children[i]);
            localize(kid);
          }
        });
        card.setAttribute('data-done', fresh.getAttribute('data-done'));
      }
      parts = now;
      return card.getAttribute('data-done') !== 'true';
    }

    function tick() {
      fetch(url, { credentials: 'same-origin', cache: 'no-store', redirect: 'manual' })
        .then(function (res) {
          if (res.status >= 400 || res.type === 'opaqueredirect') return null;
          return res.ok ? res.text() : '';
        })
        .then(function (html) {
          if (html === null) return; // gone, or signed out: stop
          if (html === '' || apply(html)) setTimeout(tick, 2000);
        })
        .catch(function () { setTimeout(tick, 2000); });
    }

    if (card.getAttribute('data-done') !== 'true') setTimeout(tick, 2000);
  }

  document.addEventListener('DOMContentLoaded', function () {
    var box = document.getElementById('job-live') || document.getElementById('workflow-live');
    if (box) {
      live(box);
    }
    localize(document);
  });
})();
