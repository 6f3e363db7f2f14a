// Charts that fit their cell (loaded on chart pages by _ext/recbook_reader.py, before the browser
// test's vegaEmbed wrapper in _ext/recbook_site.py, so that the test records the chart as drawn).
//
// A chart is drawn as written. If it is wider than its cell (a phone is 390 px wide), it is drawn
// again: panels side by side are stacked (hconcat -> vconcat, concat -> one column), then every
// view with a fixed width is narrowed by what still sticks out, up to three times. What still
// sticks out then is text (a readout, long labels): the drawing is scaled down to the cell if that
// takes no more than 20%; otherwise the chart scrolls sideways inside its cell, with a visible
// hint (and the browser test reports it: shorten the text or break it into lines). A chart inside a closed
// "Going deeper" section is drawn when the section is opened (its width is unknown before).
(function () {
  "use strict";
  var raw = window.vegaEmbed;
  if (!raw) return;
  var MIN_WIDTH = 120;
  var MIN_SCALE = 0.8;  // scaled down no further: 12 px labels stay above 9.5 px

  function available(el) {
    var box = el.parentElement || el;
    var style = getComputedStyle(box);
    return box.clientWidth - parseFloat(style.paddingLeft || 0) - parseFloat(style.paddingRight || 0);
  }
  function drawnWidth(el) {
    var marks = el.querySelector("svg.marks, canvas.marks");
    return marks ? marks.getBoundingClientRect().width : 0;
  }
  function walk(node, visit) {
    if (Array.isArray(node)) { node.forEach(function (n) { walk(n, visit); }); return; }
    if (!node || typeof node !== "object") return;
    visit(node);
    ["hconcat", "vconcat", "concat", "layer", "spec"].forEach(function (k) { if (node[k]) walk(node[k], visit); });
  }
  function stack(spec) {
    var changed = false;
    walk(spec, function (node) {
      if (node.hconcat) { node.vconcat = node.hconcat; delete node.hconcat; changed = true; }
      if (node.concat && node.columns !== 1) { node.columns = 1; changed = true; }
    });
    return changed;
  }
  function narrow(spec, by) {
    var changed = false;
    walk(spec, function (node) {
      if (typeof node.width === "number" && node.width > MIN_WIDTH) {
        node.width = Math.max(MIN_WIDTH, Math.floor(node.width - by));
        changed = true;
      } else if (node.width && typeof node.width.step === "number" && node.width.step > 2) {
        node.width = {step: Math.max(2, node.width.step * 0.75)};
        changed = true;
      }
    });
    return changed;
  }
  function redraw(el, result, spec, opt) {
    if (result && result.finalize) result.finalize();
    el.innerHTML = "";
    return raw(el, spec, opt);
  }

  async function fit(el, spec, opt) {
    var result = await raw(el, spec, opt);
    var room = available(el);
    if (!(room > 0) || drawnWidth(el) <= room + 1) return result;
    var fitted = JSON.parse(JSON.stringify(spec));
    if (stack(fitted)) result = await redraw(el, result, fitted, opt);
    for (var i = 0; i < 3 && drawnWidth(el) > room + 1; i++) {
      if (!narrow(fitted, drawnWidth(el) - room + 2)) break;
      result = await redraw(el, result, fitted, opt);
    }
    var left = drawnWidth(el);
    if (left > room + 1 && room / left >= MIN_SCALE) {  // what sticks out is text: scale it all
      var marks = el.querySelector("svg.marks");
      if (marks) { marks.style.maxWidth = "100%"; marks.style.height = "auto"; }
      el.setAttribute("data-recbook-scaled", (room / left).toFixed(2));
    }
    if (drawnWidth(el) > room + 1) {  // last resort: scroll inside the cell, and say so
      el.parentElement.classList.add("recbook-chart-scroll");
      el.parentElement.setAttribute("data-hint", "The chart is wider than the page: scroll sideways →");
    }
    el.setAttribute("data-recbook-fitted", fitted === spec ? "0" : "1");
    return result;
  }

  function whenOpen(el) {
    return new Promise(function (resolve) {
      var details = el.closest("details:not([open])");
      if (!details) { resolve(); return; }
      details.addEventListener("toggle", function onToggle() {
        if (!details.open) return;
        details.removeEventListener("toggle", onToggle);
        whenOpen(el).then(resolve);  // nested closed sections
      });
    });
  }

  window.vegaEmbed = Object.assign(function (el, spec, opt) {
    var element = typeof el === "string" ? document.querySelector(el) : el;
    return whenOpen(element).then(function () { return fit(element, spec, opt); });
  }, raw);
})();
