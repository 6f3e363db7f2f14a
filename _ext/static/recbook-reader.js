// "Going deeper" sections (_ext/recbook_reader.py) are closed <details>: open the one that holds
// the target of the page's address (#fragment) or of a link the reader follows, then scroll to it.
(function () {
  "use strict";
  function openFor(id) {
    if (!id) return;
    var target = document.getElementById(decodeURIComponent(id));
    if (!target) return;
    var opened = false;
    for (var d = target.closest("details"); d; d = d.parentElement && d.parentElement.closest("details")) {
      if (!d.open) { d.open = true; opened = true; }
    }
    if (opened) target.scrollIntoView();
  }
  function fromHash() { openFor(location.hash.slice(1)); }
  document.addEventListener("DOMContentLoaded", fromHash);
  window.addEventListener("hashchange", fromHash);
  document.addEventListener("click", function (e) {
    var a = e.target.closest && e.target.closest("a[href*='#']");
    if (!a || a.pathname !== location.pathname) return;
    openFor(a.hash.slice(1));
  });
})();
