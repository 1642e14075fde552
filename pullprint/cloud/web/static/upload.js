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
      if (xhr.status < 400 && xhr.responseURL && xhr.responseURL.indexOf("/upload") === -1) {
        window.location.assign(xhr.responseURL);
        return;
      }
      document.open();
      document.write(xhr.responseText);
      document.close();
    });
    xhr.addEventListener("error", function () {
      text.textContent = "The upload failed: check the connection and try again.";
      button.disabled = false;
    });
    xhr.send(new FormData(form));
  });
}());
