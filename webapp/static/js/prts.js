// Small behaviours every page shares; kept out of the HTML so a strict CSP can forbid inline script.
/* Dismiss buttons: <button data-dismiss=".selector"> removes its closest match. */
document.addEventListener("click", function (event) {
  var button = event.target.closest && event.target.closest("[data-dismiss]");
  if (!button) return;
  var target = button.closest(button.getAttribute("data-dismiss") || ".alert");
  if (target) {
    target.remove();
    document.getElementById("main").focus({ preventScroll: true });
  }
});
