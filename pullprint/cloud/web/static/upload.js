// Progressive enhancement of the upload form: send it with XMLHttpRequest to show progress.
// Without JavaScript the plain form posts the same fields.
(function () {
  "use strict";
  var form = document.getElementById("upload");
  if (!form || !window.XMLHttpRequest || !window.FormData) return;
  var bar = document.getElementById("progress");
  var text = document.getElementById("progress-text");
  var button = document.getElementById("upload-button");
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    bar.classList.remove("hidden");
    text.classList.remove("hidden");
    button.disabled = true;
    xhr.upload.addEventListener("progress", function (e) {
      if (!e.lengthComputable) return;
      var pct = Math.round((e.loaded / e.total) * 100);
      bar.value = pct;
      text.textContent = pct < 100 ? "Uploading… " + pct + " %" : "Checking the document…";
    });
    xhr.addEventListener("load", function () {
      // Show the page the server answered with (the queue after a redirect, or the form with
      // its error): it carries the one-time message, so it is not loaded again.
      var url = xhr.responseURL;
      document.open();
      document.write(xhr.responseText);
      document.close();
      if (url && xhr.status < 400) window.history.replaceState(null, "", url);
    });
    xhr.addEventListener("error", function () {
      text.textContent = "The upload failed: check the connection and try again.";
      button.disabled = false;
    });
    xhr.send(new FormData(form));
  });
}());
