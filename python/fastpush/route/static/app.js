// The router's status page: reads /api/status every 2 s and drives the control endpoints.
// No build step, no dependencies. A token (when the router asks for one) comes from the page's
// #token=... fragment or the box, and stays in this tab's sessionStorage.
"use strict";

const PAGE = 50;
let failedOffset = 0;
let timer = null;

function token() {
  const match = /(?:^|[#&])token=([^&]+)/.exec(location.hash);
  if (match) {
    sessionStorage.setItem("fastpush-token", decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem("fastpush-token");
}

function headers(json) {
  const h = {};
  const t = token();
  if (t) h.Authorization = "Bearer " + t;
  if (json) h["Content-Type"] = "application/json";
  return h;
}

function text(value) {
  return value === null || value === undefined ? "" : String(value);
}

function bytes(n) {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i += 1; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}

function age(seconds) {
  if (seconds === null || seconds === undefined) return "";
  if (seconds < 120) return seconds.toFixed(0) + " s";
  if (seconds < 7200) return (seconds / 60).toFixed(0) + " min";
  return (seconds / 3600).toFixed(1) + " h";
}

function cell(row, value, cls) {
  const td = document.createElement("td");
  td.textContent = text(value);
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

function button(label, action, destination, body) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.dataset.action = action;
  b.dataset.destination = destination;
  b.addEventListener("click", () => act(destination, action, body));
  return b;
}

async function act(destination, action, body) {
  const url = "/api/destinations/" + encodeURIComponent(destination) + "/" + action;
  const answer = await fetch(url, {
    method: "POST", headers: headers(true), body: JSON.stringify(body || {}),
  });
  if (!answer.ok) {
    const detail = await answer.json().catch(() => ({}));
    document.getElementById("error").textContent =
      action + " " + destination + ": " + (detail.error || answer.status);
  }
  refresh();
}

function render(status) {
  document.getElementById("title").textContent =
    "(" + text(status.router.ae_title) + " on port " + text(status.router.port) + ")";
  document.getElementById("receiving").textContent = status.router.receiving ? "yes" : "no";
  document.getElementById("received").textContent =
    status.received.files + " files, " + bytes(status.received.bytes) +
    (status.received.refused ? ", " + status.received.refused + " refused" : "");
  document.getElementById("spooled").textContent =
    status.spool.files + " files, " + bytes(status.spool.bytes);
  document.getElementById("free").textContent = bytes(status.spool.free_bytes);
  document.getElementById("updated").textContent = new Date().toLocaleTimeString();
  document.getElementById("refusing").textContent =
    status.router.refusing ? "Refusing new stores (0xA700): " + status.router.refusing : "";

  const body = document.querySelector("#destinations tbody");
  body.replaceChildren();
  for (const d of status.destinations) {
    const row = document.createElement("tr");
    row.dataset.destination = d.name;
    cell(row, d.name + " (" + d.called_ae + "@" + d.host + ":" + d.port + ")");
    cell(row, d.state, "state state-" + d.state);
    cell(row, d.queued, "n queued");
    cell(row, age(d.oldest_age_seconds), "n oldest");
    cell(row, d.forwarded, "n forwarded");
    cell(row, d.failed, "n failed");
    cell(row, d.retries, "n retries");
    cell(row, d.files_per_second.toFixed(1) + " files/s, " + bytes(d.bytes_per_second) + "/s", "n rate");
    cell(row, d.failing_since
      ? d.last_error + " (since " + new Date(d.failing_since * 1000).toLocaleTimeString() + ")"
      : d.last_error, "error");
    const control = cell(row, "");
    control.appendChild(d.held ? button("Release", "release", d.name)
                               : button("Hold", "hold", d.name));
    control.appendChild(button("Retry failed", "retry", d.name));
    body.appendChild(row);
  }

  const failed = status.failed;
  document.getElementById("failed-count").textContent = "(" + failed.total + ")";
  const rows = document.querySelector("#failed tbody");
  rows.replaceChildren();
  for (const f of failed.entries) {
    const row = document.createElement("tr");
    cell(row, f.destination);
    cell(row, f.entry, "entry");
    cell(row, f.status === null ? "" : "0x" + f.status.toString(16).toUpperCase().padStart(4, "0"));
    cell(row, f.reason);
    cell(row, "").appendChild(button("Remove", "remove", f.destination, { entry: f.entry }));
    rows.appendChild(row);
  }
  document.getElementById("failed-prev").disabled = failedOffset === 0;
  document.getElementById("failed-next").disabled = failedOffset + PAGE >= failed.total;
}

async function refresh() {
  clearTimeout(timer);
  try {
    const query = "?failed_offset=" + failedOffset + "&failed_limit=" + PAGE;
    const answer = await fetch("/api/status" + query, { headers: headers(false) });
    if (answer.status === 401) {
      document.getElementById("token-box").style.display = "block";
      document.getElementById("error").textContent = "This router asks for a token.";
    } else if (!answer.ok) {
      document.getElementById("error").textContent = "status: HTTP " + answer.status;
    } else {
      document.getElementById("error").textContent = "";
      render(await answer.json());
      document.body.dataset.loaded = "1";
    }
  } catch (error) {
    document.getElementById("error").textContent = "The router does not answer: " + error;
  }
  timer = setTimeout(refresh, 2000);
}

document.getElementById("token-save").addEventListener("click", () => {
  sessionStorage.setItem("fastpush-token", document.getElementById("token").value);
  document.getElementById("token-box").style.display = "none";
  refresh();
});
document.getElementById("failed-prev").addEventListener("click", () => {
  failedOffset = Math.max(0, failedOffset - PAGE);
  refresh();
});
document.getElementById("failed-next").addEventListener("click", () => {
  failedOffset += PAGE;
  refresh();
});
refresh();
