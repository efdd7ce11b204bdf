// The status page's live view and actions. The page reads without this
// script; with it, the sections follow the daemon through server-sent
// events and the buttons close and restart interpreters.
"use strict";
(() => {
  const tokenKey = "subinterp-token";
  const byId = (id) => document.getElementById(id);

  // A link may carry the token in its fragment, which never reaches a
  // server: it is kept for this tab and taken out of the address.
  const fromHash = location.hash.match(/^#token=(.+)$/);
  if (fromHash) {
    sessionStorage.setItem(tokenKey, decodeURIComponent(fromHash[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  const token = () => sessionStorage.getItem(tokenKey) || "";

  const tokenForm = byId("token-form");
  const showToken = () => {
    if (tokenForm) byId("token-state").textContent = token() ? "actions enabled" : "actions need it";
  };
  if (tokenForm) {
    tokenForm.addEventListener("submit", (e) => {
      e.preventDefault();
      const input = byId("token");
      sessionStorage.setItem(tokenKey, input.value.trim());
      input.value = "";
      showToken();
    });
  }
  showToken();

  const notice = (text, bad) => {
    const n = byId("notice");
    n.textContent = text;
    n.className = "notice " + (bad ? "bad" : "ok");
  };

  // Swap a section in only when it changed, keeping open stderr tails
  // open.
  const shown = {};
  const swap = (id, html) => {
    const el = byId(id);
    if (!el || shown[id] === html) return;
    shown[id] = html;
    const open = new Set([...el.querySelectorAll("details[open][data-key]")].map((d) => d.dataset.key));
    el.innerHTML = html;
    for (const d of el.querySelectorAll("details[data-key]")) {
      if (open.has(d.dataset.key)) d.open = true;
    }
  };

  const live = byId("live");
  const setLive = (on) => {
    live.textContent = on ? "live" : "reconnecting";
    live.classList.toggle("on", on);
  };
  // EventSource reconnects by itself after an error.
  const events = new EventSource("/events");
  events.onopen = () => setLive(true);
  events.onerror = () => setLive(false);
  events.onmessage = (e) => {
    const sections = JSON.parse(e.data);
    for (const id of Object.keys(sections)) swap(id, sections[id]);
    setLive(true);
  };

  document.addEventListener("click", async (e) => {
    const button = e.target.closest("button[data-action]");
    if (!button) return;
    if (!token()) {
      notice("Enter the daemon's token first.", true);
      const input = byId("token");
      if (input) input.focus();
      return;
    }
    const { action, id } = button.dataset;
    button.disabled = true;
    try {
      const res = await fetch(`/interpreters/${encodeURIComponent(id)}/${action}`, {
        method: "POST",
        headers: { "X-Subinterp-Token": token() },
        cache: "no-store",
        credentials: "omit",
      });
      const body = await res.json().catch(() => ({ error: `${res.status} ${res.statusText}` }));
      if (body.error) notice(`${action} ${id}: ${body.error}`, true);
      else notice(body.done, false);
    } catch (err) {
      notice(`${action} ${id}: ${err}`, true);
    } finally {
      button.disabled = false;
    }
  });
})();
