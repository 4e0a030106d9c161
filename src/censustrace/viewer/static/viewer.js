// censustrace viewer: a little progressive enhancement; every page works without it.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // Print buttons (subject access responses, the Article 30 record).
  for (const button of document.querySelectorAll("[data-print]")) {
    button.hidden = false;
    button.addEventListener("click", () => window.print());
  }
  // Copy a checksum to the clipboard.
  for (const button of document.querySelectorAll("[data-copy]")) {
    button.hidden = false;
    button.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(button.getAttribute("data-copy"));
        button.textContent = "Copied";
      } catch (_) {
        button.textContent = "Copy failed";
      }
    });
  }
  // Forms that must not be re-sent from history (subject access): clear the field after sending.
  for (const form of document.querySelectorAll("form[data-forget]")) {
    form.addEventListener("submit", () => {
      window.setTimeout(() => { for (const input of form.querySelectorAll("input[data-secret]")) input.value = ""; }, 0);
    });
  }
});
