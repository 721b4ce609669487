// The Foto tab's drop zone: a file dropped on it is put in the form's file input and the
// form sent, so a drop goes the same way (and gets the same errors) as the file picker,
// which stays the keyboard's way to choose a photo.
(function () {
  "use strict";
  function setup(zone) {
    var form = zone.closest("form");
    var input = form && form.querySelector('input[type="file"]');
    if (!input) { return; }
    function over(event) {
      event.preventDefault();  // without it the browser opens the file instead
      zone.classList.add("dragging");
    }
    zone.addEventListener("dragenter", over);
    zone.addEventListener("dragover", over);
    zone.addEventListener("dragleave", function () { zone.classList.remove("dragging"); });
    zone.addEventListener("drop", function (event) {
      event.preventDefault();
      zone.classList.remove("dragging");
      var files = event.dataTransfer && event.dataTransfer.files;
      if (!files || files.length === 0) { return; }
      var one = new DataTransfer();
      one.items.add(files[0]);
      input.files = one.files;
      form.requestSubmit();
    });
  }
  function init() {
    Array.prototype.forEach.call(document.querySelectorAll("[data-drop-zone]"), setup);
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
