// The controls of a book page, for tests/browser/test_pages.py. Loaded into the page as one script
// (it defines window.recbookControls); each method returns a Promise of a plain JSON-able object.
//
// A control is any <input>, <select>, <textarea> or <button> inside a cell's output. It belongs to
//   * a chart: Altair/Vega-Lite, recorded in window.recbookCharts by _ext/recbook_site.py, its
//     controls in the chart's .vega-bindings; the figure is the chart's SVG;
//   * or a widget: ipywidgets, rendered by the widget manager; the figure is what the nearest
//     widget box around the control shows besides the control itself.
// A control that belongs to neither is reported: the test cannot tell whether it does anything.
(function () {
  "use strict";
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const CONTROL = "input, select, textarea, button";
  const within = (scope) => CONTROL.split(", ").map((c) => `${scope} ${c}`).join(", ");
  const OUTPUT = ".cell_output";  // myst-nb wraps every cell output in one

  function describe(el) {
    const label = el.closest("label, .vega-bind, .widget-inline-hbox, .jupyter-widgets");
    const text = label ? (label.querySelector(".vega-bind-name, .widget-label") || label).textContent : "";
    return `${el.tagName.toLowerCase()}${el.name ? "[name=" + el.name + "]" : ""}` +
           (text.trim() ? ` "${text.trim().slice(0, 40)}"` : "");
  }

  // ------------------------------------------------------------------------------------------
  // Charts
  // ------------------------------------------------------------------------------------------
  function expectedCharts() {
    // Every chart Altair writes as HTML carries this loader; count them in cell outputs.
    return Array.from(document.querySelectorAll(OUTPUT + " script"))
      .filter((s) => !s.src && s.textContent.includes("VEGA_DEBUG")).length;
  }

  async function waitForCharts(timeoutMs) {
    const want = expectedCharts();
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline && (window.recbookCharts || []).length < want) await sleep(100);
    await Promise.all((window.recbookCharts || []).map((c) => c.view.runAsync()));
    return {expected: want, rendered: (window.recbookCharts || []).length};
  }

  function chartControls(chart) {
    return Array.from(chart.element.querySelectorAll(within(".vega-bindings")));
  }

  function chartSignature(chart) {
    const svg = chart.element.querySelector("svg.marks");
    if (svg) return svg.innerHTML;
    const canvas = chart.element.querySelector("canvas.marks");
    return canvas ? canvas.toDataURL() : "";
  }

  function chartTexts(chart) {
    return Array.from(chart.element.querySelectorAll("svg.marks text")).map((t) => t.textContent);
  }

  function controlValue(el) {
    if (el.type === "checkbox" || el.type === "radio") return el.checked;
    if (el.tagName === "SELECT") return el.selectedIndex;
    return el.value;
  }

  function fire(el) {
    el.dispatchEvent(new Event("input", {bubbles: true}));
    el.dispatchEvent(new Event("change", {bubbles: true}));
  }

  function setControl(el, value) {  // value as returned by controlValue
    if (el.type === "checkbox" || el.type === "radio") {
      if (el.checked !== value) el.click();
      return;
    }
    if (el.tagName === "SELECT") el.selectedIndex = value; else el.value = value;
    fire(el);
  }

  function moveControl(el) {  // to a value clearly different from the current one
    if (el.type === "checkbox") { el.click(); return; }
    if (el.type === "radio") {
      const group = Array.from(el.closest(".vega-bind").querySelectorAll("input[type=radio]"));
      const other = group.find((r) => !r.checked);
      if (other) other.click();
      return;
    }
    if (el.tagName === "SELECT") {
      const n = el.options.length;
      el.selectedIndex = (el.selectedIndex + Math.max(1, Math.floor(n / 2))) % n;
    } else if (el.type === "range") {
      const lo = +el.min, hi = +el.max;
      el.value = (+el.value - lo < (hi - lo) / 2) ? hi : lo;
    } else {
      return;  // a text box: nothing generic to type
    }
    fire(el);
  }

  async function settle(chart) {
    await chart.view.runAsync();
    await sleep(30);
  }

  const nextFrame = () => new Promise((r) => requestAnimationFrame(() => r()));

  // Milliseconds from a control's change until the chart has run its dataflow and redrawn, the
  // browser's next frame included: what a reader waits for after moving it.
  async function timed(chart, change) {
    await nextFrame();
    const t0 = performance.now();
    change();
    await chart.view.runAsync();
    await nextFrame();
    return performance.now() - t0;
  }

  // Move each control of chart `i` on its own, then put it back: each must change the figure.
  // Both changes are timed (`timings`, one entry per control: the slower of the two).
  async function exerciseChart(i) {
    const chart = window.recbookCharts[i];
    const problems = [];
    const timings = [];
    const controls = chartControls(chart);
    for (const el of controls) {
      const start = controlValue(el);
      const before = chartSignature(chart);
      const there = await timed(chart, () => moveControl(el));
      await settle(chart);
      if (controlValue(el) === start) problems.push(`control ${describe(el)} could not be moved`);
      else if (chartSignature(chart) === before) problems.push(`control ${describe(el)} does nothing: the figure did not change`);
      const back = await timed(chart, () => setControl(el, start));
      await settle(chart);
      timings.push({control: describe(el), ms: Math.max(there, back)});
    }
    return {controls: controls.map(describe), problems: problems, timings: timings,
            params: controls.map((el) => el.name).filter((n, k, all) => n && all.indexOf(n) === k)};
  }

  // Open every "Going deeper" section (closed <details>): the charts inside are drawn when opened.
  function openAll() {
    const closed = Array.from(document.querySelectorAll("details:not([open])"));
    closed.forEach((d) => { d.open = true; });
    return closed.length;
  }

  // Width of every chart and figure against the room its cell gives it (CSS pixels).
  function widths() {
    const out = [];
    const room = (el) => {  // content width of the nearest block around the element
      let box = el.parentElement;
      while (box && (box.clientWidth === 0 || getComputedStyle(box).display.startsWith("inline"))) box = box.parentElement;
      if (!box) return document.documentElement.clientWidth;
      const style = getComputedStyle(box);
      return box.clientWidth - parseFloat(style.paddingLeft || 0) - parseFloat(style.paddingRight || 0);
    };
    (window.recbookCharts || []).forEach((chart, k) => {
      const marks = chart.element.querySelector("svg.marks, canvas.marks");
      const scroller = chart.element.closest(".recbook-chart-scroll");
      out.push({kind: "chart", index: k + 1, width: marks ? marks.getBoundingClientRect().width : 0,
                room: room(chart.element), scrolls: !!scroller,
                fitted: chart.element.getAttribute("data-recbook-fitted") === "1",
                scaled: +(chart.element.getAttribute("data-recbook-scaled") || 1), src: ""});
    });
    const figures = Array.from(document.querySelectorAll("article img, article .cell_output svg:not(.marks)"))
      .filter((el) => !el.closest(".vega-embed") && el.getBoundingClientRect().width > 0);
    figures.forEach((el, k) => {
      const box = el.getBoundingClientRect();
      const img = el.tagName.toLowerCase() === "img";
      // An image squeezed to the page's width but not in height: drawn out of shape.
      const distorted = img && el.naturalWidth > 0 && box.height > 0 &&
        Math.abs((box.width / box.height) / (el.naturalWidth / el.naturalHeight) - 1) > 0.03;
      out.push({kind: img ? "image" : "svg", index: k + 1,
                width: box.width, room: room(el), scrolls: false, fitted: false,
                scaled: 1, src: (el.getAttribute("src") || "").split("/").pop(), distorted: distorted});
    });
    const doc = document.scrollingElement;
    out.push({kind: "page", index: 0, width: doc.scrollWidth, room: doc.clientWidth, scrolls: false, fitted: false,
              scaled: 1, src: ""});
    return out;
  }

  // Move every control of chart `i` at once (for an "after" screenshot), or put them all back.
  const saved = new Map();
  async function moveAll(i) {
    const chart = window.recbookCharts[i];
    const controls = chartControls(chart);
    saved.set(i, controls.map(controlValue));
    controls.forEach(moveControl);
    await settle(chart);
    return {moved: controls.length};
  }
  async function restoreAll(i) {
    const chart = window.recbookCharts[i];
    const values = saved.get(i) || [];
    chartControls(chart).forEach((el, k) => setControl(el, values[k]));
    await settle(chart);
    return {restored: values.length};
  }

  // The chart's recorded checks (recbook.widgets.browser_chart): set controls, expect texts.
  async function checkChart(i) {
    const chart = window.recbookCharts[i];
    const meta = (chart.spec && chart.spec.usermeta && chart.spec.usermeta.recbook) || {};
    const checks = meta.checks || [];
    // The Chinese edition shows each check's texts in Chinese (recbook.widgets.browser_chart).
    const chinese = /^zh/i.test(document.documentElement.lang || "");
    const chineseTexts = (meta.i18n && meta.i18n.checks) || [];
    const problems = [];
    for (const [k, check] of checks.entries()) {
      for (const [name, value] of Object.entries(check.set || {})) {
        const el = chart.element.querySelector(`.vega-bindings [name="${name}"]`);
        if (!el) { problems.push(`check ${JSON.stringify(check.set)}: no control named ${name}`); continue; }
        if (el.type === "checkbox") {
          if (el.checked !== value) el.click();
        } else if (el.tagName === "SELECT") {
          const k = Array.from(el.options).findIndex((o) => o.value === String(value));
          if (k < 0) { problems.push(`check: ${value} is not an option of ${name}`); continue; }
          el.selectedIndex = k; fire(el);
        } else {
          el.value = value; fire(el);
        }
      }
      await settle(chart);
      const texts = chartTexts(chart);
      for (const want of (chinese && chineseTexts[k] ? chineseTexts[k] : check.texts) || []) {
        if (!texts.some((t) => t.includes(want))) {
          problems.push(`with ${JSON.stringify(check.set)} the chart should show ${JSON.stringify(want)}; ` +
                        `it shows ${JSON.stringify(texts.filter((t) => t.trim()).slice(0, 8))}`);
        }
      }
    }
    return {checks: checks.length, problems: problems};
  }

  // ------------------------------------------------------------------------------------------
  // Widgets (ipywidgets)
  // ------------------------------------------------------------------------------------------
  function widgetControls() {
    return Array.from(document.querySelectorAll(`${OUTPUT} .jupyter-widgets`))
      .filter((w) => !w.parentElement.closest(".jupyter-widgets"))  // outermost widgets only
      .flatMap((root) => Array.from(root.querySelectorAll(`${CONTROL}, .noUi-handle`)))
      .filter((el, k, all) => all.indexOf(el) === k);
  }

  function widgetOf(el) {  // the widget the control is part of (a slider, a dropdown ...)
    return el.closest(".widget-inline-hbox, .widget-slider, .widget-dropdown, .widget-checkbox, " +
                      ".widget-toggle-button, .widget-button, .widget-text, .jupyter-widgets");
  }

  function widgetFigure(el) {  // nearest box that holds something besides the control's widget
    const own = widgetOf(el);
    for (let box = own.parentElement; box; box = box.parentElement) {
      if (box.matches(OUTPUT)) return null;
      if (box.classList.contains("widget-container") || box.classList.contains("widget-box")) {
        if (Array.from(box.children).some((c) => !c.contains(own) && c.innerHTML.trim())) return box;
      }
    }
    return null;
  }

  function widgetSignature(figure, el) {
    const own = widgetOf(el);
    own.setAttribute("data-recbook-control", "1");
    const copy = figure.cloneNode(true);
    own.removeAttribute("data-recbook-control");
    copy.querySelectorAll("[data-recbook-control]").forEach((c) => c.remove());
    return copy.innerHTML;
  }

  function moveWidget(el) {
    if (el.classList.contains("noUi-handle")) {
      el.focus();
      for (const key of ["ArrowRight", "ArrowRight"]) {
        el.dispatchEvent(new KeyboardEvent("keydown", {key: key, keyCode: 39, which: 39, bubbles: true}));
      }
      return;
    }
    moveControl(el);
  }

  async function exerciseWidgets() {
    const controls = widgetControls();
    const problems = [];
    for (const el of controls) {
      if (el.tagName === "BUTTON" || el.type === "text" || el.tagName === "TEXTAREA") {
        problems.push(`control ${describe(el)}: a button or text box on a static page cannot compute anything`);
        continue;
      }
      if (el.tagName === "INPUT" && el.closest(".widget-slider, .widget-hslider, .widget-vslider")) continue;  // the readout box of a slider
      const figure = widgetFigure(el);
      if (!figure) { problems.push(`control ${describe(el)} belongs to no figure`); continue; }
      const before = widgetSignature(figure, el);
      moveWidget(el);
      await sleep(400);
      if (widgetSignature(figure, el) === before) {
        problems.push(`control ${describe(el)} does nothing on this page: the figure next to it did not change (a control that needs a Python kernel?)`);
      }
    }
    return {controls: controls.map(describe), problems: problems};
  }

  // ------------------------------------------------------------------------------------------
  // Controls that belong to nothing the test knows
  // ------------------------------------------------------------------------------------------
  function strayControls() {
    return Array.from(document.querySelectorAll(within(OUTPUT)))
      .filter((el) => !el.classList.contains("copybtn"))  // sphinx-copybutton on printed output
      .filter((el) => !el.closest(".vega-bindings") && !el.closest(".jupyter-widgets") &&
                      !el.closest(".vega-embed details"))
      .map(describe);
  }

  window.recbookControls = {waitForCharts, exerciseChart, moveAll, restoreAll, checkChart, openAll,
                            widths: async () => widths(),
                            exerciseWidgets, strayControls, chartTexts: (i) => chartTexts(window.recbookCharts[i])};
})();
