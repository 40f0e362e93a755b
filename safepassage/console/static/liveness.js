// The head turn the service checks (head_turn.py): on a form marked data-head-turn, sending it first asks
// the console for a challenge (POST to the panel's data-endpoint with the form's token), shows its
// prompt, records the camera for a few seconds by canvas and sends the frames with the form: the
// challenge, one JPEG file per frame (as the camera sees it: the live view alone is mirrored, by CSS)
// and the frames' times in ms since the first. The texts come from the page (data- attributes, the
// catalogue's) and the answer (the prompt, in the page's language); they are written with textContent.
// A submit button marked data-without-head-turn sends its form as it is (a photo chosen instead).
"use strict";
(function () {
  const panel = document.getElementById("head-turn");
  const prompt = document.getElementById("head-turn-prompt");
  const video = document.getElementById("head-turn-camera");
  const status = document.getElementById("head-turn-status");
  const forms = document.querySelectorAll("form[data-head-turn]");
  if (!panel || !prompt || !video || !status || forms.length === 0) {
    return;
  }
  // About 8 frames a second for about 6 seconds: a frontal look, then the turn; within the challenge's
  // limits (max_frames, max_duration_ms) whatever they are. Frames are taken by the clock: a slow
  // machine sends fewer, never slower ones.
  const RECORD_MS = 6000;
  const INTERVAL_MS = 125;
  const MAX_WIDTH = 640;
  const JPEG_QUALITY = 0.85;
  let stream = null;
  let busy = false;

  function say(key) {
    status.textContent = status.dataset[key] || "";
  }

  function buttons(enabled) {
    document.querySelectorAll("button").forEach(function (button) {
      button.disabled = !enabled;
    });
  }

  function sleep(ms) {
    return new Promise(function (resolve) {
      window.setTimeout(resolve, ms);
    });
  }

  class CameraError extends Error {}

  function openCamera() {
    if (stream) {
      return Promise.resolve();
    }
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      return Promise.reject(new CameraError("unavailable"));
    }
    return navigator.mediaDevices
      .getUserMedia({ video: { width: { ideal: 640 }, height: { ideal: 480 } }, audio: false })
      .catch(function () {
        throw new CameraError("refused");
      })
      .then(function (opened) {
        stream = opened;
        video.srcObject = opened;
        video.hidden = false;
        if (video.readyState >= 2 && video.videoWidth) {
          return undefined;
        }
        return new Promise(function (resolve) {
          video.addEventListener("loadeddata", resolve, { once: true });
        });
      });
  }

  function closeCamera() {
    if (stream) {
      stream.getTracks().forEach(function (track) {
        track.stop();
      });
      stream = null;
      video.srcObject = null;
      video.hidden = true;
    }
  }

  function challenge(form) {
    const body = new FormData();
    body.append("form_token", form.elements.namedItem("form_token").value);
    return fetch(panel.dataset.endpoint, { method: "POST", body: body, cache: "no-store" }).then(
      function (response) {
        if (!response.ok) {
          throw new Error("no challenge: " + response.status);
        }
        return response.json();
      }
    );
  }

  async function record(limits) {
    const duration = Math.min(RECORD_MS, limits.max_duration_ms);
    const scale = Math.min(1, MAX_WIDTH / video.videoWidth);
    const canvas = document.createElement("canvas");
    canvas.width = Math.round(video.videoWidth * scale);
    canvas.height = Math.round(video.videoHeight * scale);
    const context = canvas.getContext("2d");
    const shots = [];
    const start = performance.now();
    let last = -1;
    while (shots.length < limits.max_frames) {
      const at = Math.max(Math.round(performance.now() - start), last + 1);
      if (at > duration) {
        break;
      }
      last = at;
      // Unmirrored: the video element's own frame, whatever CSS does to the live view.
      context.drawImage(video, 0, 0, canvas.width, canvas.height);
      // toBlob copies the canvas now and encodes later: the next frame is not held up by it.
      const blob = new Promise(function (resolve, reject) {
        canvas.toBlob(
          function (encoded) {
            if (encoded) {
              resolve(encoded);
            } else {
              reject(new Error("a frame could not be encoded"));
            }
          },
          "image/jpeg",
          JPEG_QUALITY
        );
      });
      shots.push({ at: at, blob: blob });
      await sleep(Math.max(0, start + shots.length * INTERVAL_MS - performance.now()));
    }
    const blobs = await Promise.all(
      shots.map(function (shot) {
        return shot.blob;
      })
    );
    return shots.map(function (shot, index) {
      return { at: shot.at, blob: blobs[index] };
    });
  }

  function attach(form, sealed, frames) {
    form.elements.namedItem("head_turn_challenge").value = sealed;
    form.elements.namedItem("head_turn_times").value = frames
      .map(function (frame) {
        return String(frame.at);
      })
      .join(",");
    const files = new DataTransfer();
    frames.forEach(function (frame, index) {
      const name = "frame-" + String(index).padStart(3, "0") + ".jpg";
      files.items.add(new File([frame.blob], name, { type: "image/jpeg" }));
    });
    form.elements.namedItem("head_turn_frame").files = files.files;
  }

  async function turn(form, submitter) {
    busy = true;
    buttons(false);
    panel.hidden = false;
    try {
      say("opening");
      await openCamera();
      say("asking");
      const limits = await challenge(form);
      prompt.textContent = limits.prompt;
      if (panel.dataset.open === "load") {
        panel.scrollIntoView({ block: "start" }); // the prompt in view (the kiosk's panel covers the screen)
      }
      say("recording");
      const frames = await record(limits);
      if (panel.dataset.open !== "load") {
        closeCamera();
      }
      say("sending");
      attach(form, limits.challenge, frames);
      // Enabled again before sending: a disabled submitter's name and value would not be sent.
      buttons(true);
      form.requestSubmit(submitter || undefined);
    } catch (error) {
      prompt.textContent = "";
      say(error instanceof CameraError ? error.message : "failed");
      closeCamera();
      buttons(true);
    } finally {
      busy = false;
    }
  }

  forms.forEach(function (form) {
    form.addEventListener("submit", function (event) {
      const submitter = event.submitter;
      if (submitter && submitter.hasAttribute("data-without-head-turn")) {
        return;
      }
      if (form.elements.namedItem("head_turn_challenge").value) {
        return; // recorded: on its way
      }
      event.preventDefault();
      if (!busy) {
        turn(form, submitter);
      }
    });
  });

  // A page that frames the person first (the caseworker's enrolment) opens the camera at once and
  // offers its head-turn button once the camera is on.
  if (panel.dataset.open === "load") {
    say("opening");
    openCamera()
      .then(function () {
        say("ready");
        document.querySelectorAll("[data-needs-camera]").forEach(function (element) {
          element.hidden = false;
        });
      })
      .catch(function (error) {
        say(error instanceof CameraError ? error.message : "failed");
      });
  }
})();
