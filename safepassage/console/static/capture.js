// The officer desk's webcam capture (templates/capture.html): the camera's live view, and the frame
// the officer takes put into the form's file input, then the form sent. No other page has a script;
// the texts shown come from the page (data- attributes), which the message catalogue rendered.
"use strict";
(function () {
  const video = document.getElementById("camera");
  const take = document.getElementById("take");
  const input = document.getElementById("probe");
  const form = document.getElementById("capture-form");
  const status = document.getElementById("camera-status");
  if (!video || !take || !input || !form || !status) {
    return;
  }
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    status.textContent = status.dataset.unavailable;
    return;
  }
  navigator.mediaDevices
    .getUserMedia({ video: { width: { ideal: 1280 }, height: { ideal: 720 } }, audio: false })
    .then(function (stream) {
      // Ready once the first frame's size is known: a frame can be taken from then on.
      video.addEventListener("loadedmetadata", function () {
        video.hidden = false;
        take.hidden = false;
        status.textContent = status.dataset.ready;
      });
      video.srcObject = stream;
    })
    .catch(function () {
      status.textContent = status.dataset.refused;
    });
  take.addEventListener("click", function () {
    if (!video.videoWidth) {
      return;
    }
    const canvas = document.createElement("canvas");
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0);
    canvas.toBlob(
      function (blob) {
        const frame = new DataTransfer();
        frame.items.add(new File([blob], "capture.jpg", { type: "image/jpeg" }));
        input.files = frame.files;
        status.textContent = status.dataset.sending;
        form.requestSubmit();
      },
      "image/jpeg",
      0.92
    );
  });
})();
