// The forms' own enhancements; each form works without them.
//
// Foto's drop zone: a file dropped on it is put in the form's file input and the form
// sent, so a drop goes the same way (and gets the same errors) as the file picker, which
// stays the keyboard's way to choose a photo.
//
// The job change's company field: picking a suggestion (its datalist option) fills the
// company id beside it; typing a name no suggestion has empties the id again, so the
// server finds the company of that name or makes a new one.
(function () {
  "use strict";
  function dropZone(zone) {
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
  function companyPick(input) {
    var idField = document.getElementById(input.dataset.companyIdField);
    var list = document.getElementById(input.getAttribute("list"));
    if (!idField || !list) { return; }
    var filled = false;
    input.addEventListener("input", function () {
      var picked = Array.prototype.find.call(list.options, function (option) {
        return option.value === input.value;
      });
      if (picked) {
        idField.value = picked.dataset.companyId;
        filled = true;
      } else if (filled) {
        idField.value = "";
        filled = false;
      }
    });
  }
  function init() {
    Array.prototype.forEach.call(document.querySelectorAll("[data-drop-zone]"), dropZone);
    Array.prototype.forEach.call(document.querySelectorAll("[data-company-id-field]"), companyPick);
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
