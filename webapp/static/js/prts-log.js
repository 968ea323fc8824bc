// The job log viewer (partials/log_viewer.html). No framework.
//
// It opens at the tail: the last lines from /log/lines, then an EventSource on /log/stream
// from the last line shown. Earlier lines are fetched a window at a time when the reader
// scrolls to the top (later ones when a window in the middle is scrolled to the bottom), and
// the page never holds more than MAX_LINES lines, so a 100 MB log opens as fast as a small
// one. Lines are numbered; each number is an anchor (#L123 opens the log at that line).
// The server renders every line to escaped HTML with class-only spans (logrender.py); the
// numbers are the only thing this script puts into markup, and only as integers.
(function () {
  "use strict";

  var WINDOW = 500; // lines per fetch
  var MAX_LINES = 20000; // lines kept in the page
  var NEAR = 150; // px from an edge that counts as "at the edge"

  function Viewer(root) {
    this.root = root;
    this.body = root.querySelector("[data-log-body]");
    this.list = root.querySelector("[data-log-lines]");
    this.state = root.querySelector("[data-log-state]");
    this.followBox = root.querySelector("[data-log-follow]");
    this.linesUrl = root.getAttribute("data-lines-url");
    this.streamUrl = root.getAttribute("data-stream-url");
    this.lo = 1; // first line in the page
    this.hi = 0; // last line in the page
    this.total = 0; // last line known to exist
    this.finished = false;
    this.loading = false;
    this.source = null;
    var self = this;
    this.body.addEventListener("scroll", function () { self.onScroll(); }, { passive: true });
    this.followBox.addEventListener("change", function () { self.onFollow(); });
  }

  Viewer.prototype.url = function (base, params) {
    var url = new URL(base, window.location.href);
    Object.keys(params).forEach(function (key) { url.searchParams.set(key, String(params[key])); });
    return url.toString();
  };

  Viewer.prototype.say = function (text) {
    if (this.state.textContent !== text) this.state.textContent = text;
  };

  Viewer.prototype.fetchLines = function (params) {
    return fetch(this.url(this.linesUrl, params), {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    }).then(function (response) {
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.json();
    });
  };

  Viewer.prototype.html = function (lines) {
    var out = [];
    for (var i = 0; i < lines.length; i++) {
      var n = Number(lines[i][0]);
      if (!Number.isInteger(n) || n < 1) continue;
      out.push('<div class="log-line" id="L' + n + '"><a class="log-line__n" href="#L' + n + '">' + n +
        '</a><span class="log-line__t">' + lines[i][1] + "</span></div>");
    }
    return out.join("");
  };

  Viewer.prototype.atBottom = function () {
    return this.body.scrollHeight - this.body.scrollTop - this.body.clientHeight < NEAR;
  };

  Viewer.prototype.toBottom = function () {
    this.body.scrollTop = this.body.scrollHeight;
  };

  Viewer.prototype.following = function () {
    return this.followBox.checked;
  };

  // The page shows lines [lo, hi]; replace them all with one window.
  Viewer.prototype.show = function (data, start) {
    this.total = Math.max(this.total, data.total);
    this.list.innerHTML = this.html(data.lines);
    if (data.lines.length) {
      this.lo = data.lines[0][0];
      this.hi = data.lines[data.lines.length - 1][0];
    } else {
      this.lo = start || 1;
      this.hi = this.lo - 1;
    }
  };

  Viewer.prototype.append = function (lines) {
    var fresh = [];
    for (var i = 0; i < lines.length; i++) {
      var n = lines[i][0];
      if (n > this.total) this.total = n;
      if (n === this.hi + 1) { fresh.push(lines[i]); this.hi = n; }
    }
    if (!fresh.length) return;
    var stick = this.following();
    this.list.insertAdjacentHTML("beforeend", this.html(fresh));
    var extra = this.list.childElementCount - MAX_LINES;
    if (extra > 0 && stick) this.trim("start", extra);
    if (stick) this.toBottom();
  };

  Viewer.prototype.trim = function (end, count) {
    for (var i = 0; i < count && this.list.firstElementChild; i++) {
      if (end === "start") { this.list.firstElementChild.remove(); this.lo++; }
      else { this.list.lastElementChild.remove(); this.hi--; }
    }
  };

  Viewer.prototype.describe = function () {
    if (this.finished) {
      this.say(this.total ? "Finished · " + this.total + " lines" : "Finished · the log is empty");
    } else if (this.source && this.source.readyState === EventSource.OPEN) {
      this.say(this.total ? "Live · " + this.total + " lines" : "Live · waiting for output");
    }
  };

  Viewer.prototype.start = function () {
    var self = this;
    var target = /^#L(\d+)$/.exec(window.location.hash);
    var params = { count: WINDOW };
    if (target) {
      params.start = Math.max(1, Number(target[1]) - Math.floor(WINDOW / 2));
      this.followBox.checked = false;
    }
    this.say("Loading…");
    this.fetchLines(params).then(function (data) {
      self.show(data, params.start);
      self.finished = data.finished;
      var line = target && document.getElementById("L" + target[1]);
      if (line) line.scrollIntoView({ block: "center" });
      else self.toBottom();
      self.describe();
      if (!data.finished) self.connect();
    }).catch(function () {
      self.say("The log could not be loaded. Reload the page to try again.");
    });
  };

  Viewer.prototype.connect = function () {
    var self = this;
    // From the last line known, not the last shown: a window in the middle must not make
    // the server send everything after it. The browser resumes with Last-Event-ID itself.
    var source = new EventSource(this.url(this.streamUrl, { last_event_id: this.total }));
    this.source = source;
    source.addEventListener("open", function () { self.describe(); });
    source.addEventListener("lines", function (event) {
      if (!document.body.contains(self.root)) { source.close(); return; }
      var data;
      try { data = JSON.parse(event.data); } catch (e) { return; }
      self.append(data.lines || []);
      self.describe();
    });
    source.addEventListener("end", function () {
      source.close();
      self.finished = true;
      self.describe();
    });
    source.addEventListener("log-error", function (event) {
      source.close();
      var message = "This log is damaged and cannot be shown in full.";
      try { message = JSON.parse(event.data).message || message; } catch (e) { /* keep the default */ }
      self.say(message);
    });
    source.addEventListener("error", function () {
      if (self.finished) return;
      self.say(source.readyState === EventSource.CLOSED
        ? "Live updates stopped. Reload the page to follow the log again."
        : "Reconnecting…");
    });
  };

  Viewer.prototype.onScroll = function () {
    if (this.loading) return;
    if (this.body.scrollTop < NEAR && this.lo > 1) {
      this.earlier();
    } else if (this.atBottom() && this.hi < this.total) {
      this.later();
    }
    // Scrolling up stops following; coming back to the very end resumes it.
    var bottom = this.atBottom() && this.hi >= this.total;
    if (this.followBox.checked !== bottom) this.followBox.checked = bottom;
  };

  Viewer.prototype.earlier = function () {
    var self = this;
    var start = Math.max(1, this.lo - WINDOW);
    var count = this.lo - start;
    this.loading = true;
    this.fetchLines({ start: start, count: count }).then(function (data) {
      self.total = Math.max(self.total, data.total);
      var lines = data.lines.filter(function (line) { return line[0] < self.lo; });
      if (!lines.length) return;
      var before = self.body.scrollHeight;
      self.list.insertAdjacentHTML("afterbegin", self.html(lines));
      self.lo = lines[0][0];
      self.body.scrollTop += self.body.scrollHeight - before; // keep the reader's place
      var extra = self.list.childElementCount - MAX_LINES;
      if (extra > 0) self.trim("end", extra);
    }).catch(function () {
      self.say("Earlier lines could not be loaded.");
    }).then(function () { self.loading = false; });
  };

  Viewer.prototype.later = function () {
    var self = this;
    this.loading = true;
    this.fetchLines({ start: this.hi + 1, count: WINDOW }).then(function (data) {
      self.total = Math.max(self.total, data.total);
      var lines = data.lines.filter(function (line) { return line[0] > self.hi; });
      if (!lines.length) return;
      self.list.insertAdjacentHTML("beforeend", self.html(lines));
      self.hi = lines[lines.length - 1][0];
      var extra = self.list.childElementCount - MAX_LINES;
      if (extra > 0) {
        var before = self.body.scrollHeight;
        self.trim("start", extra);
        self.body.scrollTop -= before - self.body.scrollHeight;
      }
    }).catch(function () {
      self.say("Later lines could not be loaded.");
    }).then(function () { self.loading = false; });
  };

  Viewer.prototype.onFollow = function () {
    if (!this.followBox.checked) return;
    if (this.hi >= this.total) { this.toBottom(); return; }
    // The page holds a window in the middle: jump to the tail.
    var self = this;
    this.loading = true;
    this.fetchLines({ count: WINDOW }).then(function (data) {
      self.show(data);
      self.toBottom();
    }).catch(function () {
      self.say("The end of the log could not be loaded.");
    }).then(function () { self.loading = false; });
  };

  function scan(scope) {
    var roots = (scope || document).querySelectorAll("[data-log-viewer]:not([data-log-ready])");
    for (var i = 0; i < roots.length; i++) {
      roots[i].setAttribute("data-log-ready", "");
      new Viewer(roots[i]).start();
    }
  }

  if (window.PRTSLog) { window.PRTSLog.scan(document); return; }
  window.PRTSLog = { scan: scan };
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { scan(document); });
  } else {
    scan(document);
  }
  // A viewer swapped in by htmx starts too.
  document.addEventListener("htmx:load", function (event) { scan(event.target); });
})();
