// gantry console: swaps in a running deployment's changing parts from its event
// stream. The pages work without it (reload to see changes).
"use strict";
(function () {
  const live = document.getElementById("live");
  if (!live || !window.EventSource) return;
  const source = new EventSource(live.dataset.src);
  live.textContent = "Live: the page follows the deployment as it runs.";
  source.addEventListener("parts", function (event) {
    const parts = JSON.parse(event.data);
    for (const id of Object.keys(parts)) {
      const element = document.getElementById(id);
      // The server rendered and escaped every part.
      if (element) element.innerHTML = parts[id];
    }
  });
  source.addEventListener("problem", function (event) {
    live.textContent = "Cannot read the deployment just now: " + event.data;
  });
  source.addEventListener("end", function (event) {
    source.close();
    live.textContent = event.data === "over"
      ? "The deployment is over."
      : "No longer following the deployment: " + event.data + " Reload to try again.";
  });
})();
