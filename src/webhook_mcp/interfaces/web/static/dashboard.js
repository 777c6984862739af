// webhook-mcp dashboard: the little that needs script. Confirmations work without it (popovers).
"use strict";
document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const text = document.getElementById(button.dataset.copy).textContent;
  navigator.clipboard.writeText(text).then(() => {
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = "Copy"; }, 1500);
  });
});
// Put the cursor in a confirmation's first field when it opens.
document.addEventListener("toggle", (event) => {
  if (event.target.matches("[popover]") && event.newState === "open") {
    const field = event.target.querySelector("input:not([type=hidden]), select, button[type=submit]");
    if (field) field.focus();
  }
}, true);
