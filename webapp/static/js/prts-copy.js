// Copy buttons: <button data-copy="#input-id"> copies that input's value and says so.
// Loaded only by pages that have one; kept out of the HTML so a strict CSP can forbid inline script.
document.addEventListener("click", function (event) {
  var button = event.target.closest && event.target.closest("[data-copy]");
  if (!button) return;
  var source = document.querySelector(button.getAttribute("data-copy"));
  if (!source) return;
  var label = button.getAttribute("data-label") || button.textContent;
  button.setAttribute("data-label", label);
  function said(text) {
    button.textContent = text;
    setTimeout(function () { button.textContent = label; }, 2000);
  }
  function fallback() {
    // Plain http (no secure context) has no async clipboard: select the text and copy it.
    source.focus();
    source.select();
    try {
      said(document.execCommand("copy") ? "Copied" : "Press Ctrl+C");
    } catch (e) {
      said("Press Ctrl+C");
    }
  }
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(source.value).then(function () { said("Copied"); }, fallback);
  } else {
    fallback();
  }
});
