// Images in and out: result grids with downloads, and a dropped picture turned into a PNG
// of the model's size and channel count (what the API accepts).

export function dataUrl(base64Png) {
  return `data:image/png;base64,${base64Png}`;
}

function download(href, filename) {
  const link = document.createElement("a");
  link.href = href;
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
}

/** One image with its caption and a PNG download link. */
function card(src, filename, caption) {
  const figure = document.createElement("figure");
  const img = document.createElement("img");
  img.src = src;
  img.alt = caption;
  const text = document.createElement("figcaption");
  const link = document.createElement("a");
  link.href = src;
  link.download = filename;
  link.textContent = "PNG";
  link.setAttribute("aria-label", `download ${caption} as PNG`);
  text.append(`${caption} `, link);
  figure.append(img, text);
  return figure;
}

/** Show ``images`` (base64 PNGs) as a grid under a heading that says how to reproduce
 * them, with a button that downloads the whole grid as one PNG. */
export function renderGrid(container, images, { title, stem, captions, strip = false }) {
  const section = document.createElement("section");
  section.className = "result";
  const heading = document.createElement("h3");
  heading.textContent = title;
  const grid = document.createElement("div");
  grid.className = strip ? "grid strip" : "grid";
  images.forEach((png, i) => {
    grid.append(card(dataUrl(png), `${stem}-${i}.png`, captions ? captions[i] : `#${i}`));
  });
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = "Download grid";
  button.addEventListener("click", async () => {
    const columns = strip ? images.length : Math.ceil(Math.sqrt(images.length));
    const blob = await gridPng([...grid.querySelectorAll("img")], columns);
    const href = URL.createObjectURL(blob);
    download(href, `${stem}-grid.png`);
    setTimeout(() => URL.revokeObjectURL(href), 60_000);
  });
  section.append(heading, grid, button);
  container.prepend(section);
  return section;
}

/** Previews replace each other in one small grid. */
export function renderPreview(container, images, step) {
  container.replaceChildren(
    ...images.map((png, i) => {
      const img = document.createElement("img");
      img.src = dataUrl(png);
      img.alt = `preview ${i} at step ${step}`;
      return img;
    }),
  );
  container.hidden = false;
}

/** Tile loaded ``<img>``s into one PNG, each scaled up (without smoothing) to at least
 * 64 pixels wide so small models' pictures stay visible. */
export async function gridPng(imgs, columns) {
  await Promise.all(imgs.map((img) => img.decode()));
  const width = imgs[0].naturalWidth;
  const height = imgs[0].naturalHeight;
  const scale = Math.max(1, Math.ceil(64 / width));
  const gap = 2;
  const rows = Math.ceil(imgs.length / columns);
  const canvas = document.createElement("canvas");
  canvas.width = columns * (width * scale + gap) - gap;
  canvas.height = rows * (height * scale + gap) - gap;
  const context = canvas.getContext("2d");
  context.imageSmoothingEnabled = false;
  context.fillStyle = "#ffffff";
  context.fillRect(0, 0, canvas.width, canvas.height);
  imgs.forEach((img, i) => {
    const x = (i % columns) * (width * scale + gap);
    const y = Math.floor(i / columns) * (height * scale + gap);
    context.drawImage(img, x, y, width * scale, height * scale);
  });
  return new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
}

/**
 * A drop zone with a file picker: ``wrap`` gets a labelled file input (the keyboard way)
 * and accepts a dropped file. ``current()`` is the chosen File or null.
 */
export function imageDrop(wrap, { id, labelText }) {
  const zone = document.createElement("div");
  zone.className = "dropzone";
  zone.dataset.field = id.split("-").pop();
  const label = document.createElement("label");
  label.htmlFor = id;
  label.textContent = labelText;
  const input = document.createElement("input");
  input.type = "file";
  input.id = id;
  input.accept = "image/*";
  const thumb = document.createElement("img");
  thumb.alt = "chosen image";
  thumb.hidden = true;
  const error = document.createElement("p");
  error.className = "error";
  error.setAttribute("role", "alert");
  error.hidden = true;
  input.setAttribute("aria-describedby", (error.id = `${id}-error`));
  zone.append(label, input, thumb, error);
  wrap.append(zone);
  let file = null;
  const choose = (chosen) => {
    file = chosen || null;
    if (thumb.src) URL.revokeObjectURL(thumb.src);
    thumb.hidden = !file;
    thumb.src = file ? URL.createObjectURL(file) : "";
    zone.classList.toggle("chosen", Boolean(file));
  };
  input.addEventListener("change", () => choose(input.files[0]));
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    choose(event.dataTransfer.files[0]);
  });
  return { current: () => file, zone };
}

/** Any picture the browser can decode -> base64 PNG of ``image`` (the model's height, width,
 * channels): resized, and grey or RGB as the model takes it. */
export async function toModelPng(file, image) {
  const bitmap = await createImageBitmap(file);
  const canvas = document.createElement("canvas");
  canvas.width = image.width;
  canvas.height = image.height;
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.fillStyle = "#000000"; // transparent parts count as black, like MNIST's ground
  context.fillRect(0, 0, image.width, image.height);
  context.drawImage(bitmap, 0, 0, image.width, image.height);
  const rgba = context.getImageData(0, 0, image.width, image.height).data;
  const pixels = new Uint8Array(image.width * image.height * image.channels);
  for (let p = 0; p < image.width * image.height; p++) {
    const [r, g, b] = [rgba[4 * p], rgba[4 * p + 1], rgba[4 * p + 2]];
    if (image.channels === 1) pixels[p] = Math.round(0.299 * r + 0.587 * g + 0.114 * b);
    else pixels.set([r, g, b], 3 * p);
  }
  const png = await encodePng(pixels, image.width, image.height, image.channels);
  return base64(png);
}

function base64(bytes) {
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes) {
  let c = 0xffffffff;
  for (const byte of bytes) c = CRC_TABLE[(c ^ byte) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type, data) {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  out.set(new TextEncoder().encode(type), 4);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

/** 8-bit grey (1 channel) or RGB (3) pixels -> PNG bytes. A canvas only writes RGBA PNGs,
 * which the API refuses for a model of another channel count. */
export async function encodePng(pixels, width, height, channels) {
  const stride = width * channels;
  const raw = new Uint8Array(height * (stride + 1)); // each row: filter 0, then its bytes
  for (let y = 0; y < height; y++) raw.set(pixels.subarray(y * stride, (y + 1) * stride), y * (stride + 1) + 1);
  const zlib = new Uint8Array(
    await new Response(new Blob([raw]).stream().pipeThrough(new CompressionStream("deflate"))).arrayBuffer(),
  );
  const header = new Uint8Array(13);
  const view = new DataView(header.buffer);
  view.setUint32(0, width);
  view.setUint32(4, height);
  header.set([8, channels === 1 ? 0 : 2, 0, 0, 0], 8);
  const parts = [
    new Uint8Array([137, 80, 78, 71, 13, 10, 26, 10]),
    chunk("IHDR", header),
    chunk("IDAT", zlib),
    chunk("IEND", new Uint8Array()),
  ];
  const png = new Uint8Array(parts.reduce((n, part) => n + part.length, 0));
  parts.reduce((offset, part) => (png.set(part, offset), offset + part.length), 0);
  return png;
}
