// The Python extension `varps._varps` (nanobind): the library's Pipeline
// with flat, already-checked arguments; python/varps/__init__.py gives it
// its documented interface. Arrays cross as numpy arrays (inputs: anything
// with the buffer protocol or DLPack); the engine runs without the GIL and
// stops at the next scale boundary when Python has a signal to handle.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <cstring>
#include <filesystem>
#include <memory>

#include "varps/checkpoint.hpp"
#include "varps/config.hpp"
#include "varps/edit.hpp"
#include "varps/error.hpp"
#include "varps/image.hpp"
#include "varps/pipeline.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace varps::python {

namespace {

using ImagesIn = nb::ndarray<const uint8_t, nb::ndim<4>, nb::c_contig, nb::device::cpu>;
using MaskIn = nb::ndarray<const float, nb::ndim<2>, nb::c_contig, nb::device::cpu>;

[[noreturn]] void raise(PyObject* type, const std::string& msg) {
  PyErr_SetString(type, msg.c_str());
  throw nb::python_error();
}

// Thrown out of the engine's progress callback when Python has a pending
// signal (KeyboardInterrupt); its error indicator is set already.
struct Interrupted {};

// uint8 [N, H, W, 3] owned by the returned array.
nb::ndarray<nb::numpy, uint8_t, nb::ndim<4>> images_array(const GeneratedImages& g) {
  const size_t n = static_cast<size_t>(g.count), h = static_cast<size_t>(g.height), w = static_cast<size_t>(g.width);
  auto* buf = new uint8_t[n * h * w * 3];
  for (size_t i = 0; i < n; ++i) {
    const RgbImage rgb = to_rgb8(g.pixels.data() + i * 3 * h * w, static_cast<int>(h), static_cast<int>(w));
    std::memcpy(buf + i * h * w * 3, rgb.pixels.data(), rgb.pixels.size());
  }
  nb::capsule owner(buf, [](void* p) noexcept { delete[] static_cast<uint8_t*>(p); });
  return nb::ndarray<nb::numpy, uint8_t, nb::ndim<4>>(buf, {n, h, w, 3}, owner);
}

// uint8 [N, H, W, 3] → float [N, 3, H, W] in [-1, 1], as the CLI reads PNGs.
Tensor images_tensor(const ImagesIn& images) {
  const int64_t n = static_cast<int64_t>(images.shape(0)), h = static_cast<int64_t>(images.shape(1)),
                w = static_cast<int64_t>(images.shape(2));
  if (images.shape(3) != 3) raise(PyExc_ValueError, "images must be uint8 [N, H, W, 3] (RGB)");
  Tensor out(Shape{n, 3, h, w});
  const size_t one = static_cast<size_t>(h * w * 3);
  for (int64_t i = 0; i < n; ++i) {
    RgbImage rgb{static_cast<int>(w), static_cast<int>(h), std::vector<uint8_t>(images.data() + i * one,
                                                                                images.data() + (i + 1) * one)};
    const Tensor chw = rgb8_to_signed_chw(rgb);
    std::copy(chw.data.begin(), chw.data.end(), out.data.begin() + i * 3 * h * w);
  }
  return out;
}

nb::dict var_config_dict(const VarConfig& c) {
  nb::dict d;
  d["depth"] = c.depth;
  d["embed_dim"] = c.embed_dim;
  d["num_heads"] = c.num_heads;
  d["head_dim"] = c.head_dim;
  d["mlp_hidden"] = c.mlp_hidden;
  d["num_classes"] = c.num_classes;
  d["vocab_size"] = c.vocab_size;
  d["cvae"] = c.cvae;
  d["patch_nums"] = c.patch_nums;
  d["shared_aln"] = c.shared_aln;
  d["attn_l2_norm"] = c.attn_l2_norm;
  d["description"] = c.describe();
  return d;
}

nb::dict vae_config_dict(const VaeConfig& c) {
  nb::dict d;
  d["vocab_size"] = c.vocab_size;
  d["cvae"] = c.cvae;
  d["ch"] = c.ch;
  d["ch_mult"] = c.ch_mult;
  d["encoder_res_blocks"] = c.encoder_res_blocks;
  d["decoder_res_blocks"] = c.decoder_res_blocks;
  d["num_phi"] = c.num_phi;
  d["downsample"] = c.downsample();
  d["has_encoder"] = c.has_encoder();
  d["description"] = c.describe();
  return d;
}

// Runs `body` without the GIL, turning the engine's errors into Python's:
// `argument_errors` makes them ValueError (calls whose every failure is
// about their inputs), RuntimeError otherwise.
template <class F>
auto without_gil(bool argument_errors, F&& body) {
  std::string error;
  bool interrupted = false;
  {
    nb::gil_scoped_release release;
    try {
      return body();
    } catch (const Interrupted&) {
      interrupted = true;
    } catch (const Error& e) {
      error = e.what();
    } catch (const std::bad_alloc&) {
      error = "out of memory";
    }
  }
  if (interrupted) throw nb::python_error();
  raise(argument_errors ? PyExc_ValueError : PyExc_RuntimeError, error);
}

class PyPipeline {
 public:
  PyPipeline(std::optional<std::string> var, std::optional<std::string> vae, std::optional<std::string> preset,
             const std::string& device, const std::string& precision, int threads, bool cuda_graphs) {
    PipelineOptions o;
    o.device = device;
    o.precision = precision;
    o.threads = threads;
    o.cuda_graphs = cuda_graphs;
    check_backend_choice_or_throw(o);
    if (device == "cuda" && cuda_device_count() == 0)
      raise(PyExc_RuntimeError, "device='cuda': no CUDA device is available to this process (or this build has no "
                                "CUDA backend)");
    if (preset) {
      try {
        preset_var_config(*preset);
      } catch (const Error& e) {
        raise(PyExc_ValueError, e.what());
      }
    }
    try {
      if (var || vae) {
        if (!var || !vae) raise(PyExc_ValueError, "give both var= and vae= checkpoints, or neither");
        if (preset) raise(PyExc_ValueError, "preset= replaces the checkpoints: give var=/vae= or preset=, not both");
        for (const std::string* p : {&*var, &*vae})
          if (!std::filesystem::exists(*p)) {
            errno = ENOENT;
            PyErr_SetFromErrnoWithFilename(PyExc_FileNotFoundError, p->c_str());
            throw nb::python_error();
          }
        nb::gil_scoped_release release;
        pipe_ = std::make_unique<Pipeline>(Pipeline::from_files(*var, *vae, o));
      } else {
        nb::gil_scoped_release release;
        pipe_ = std::make_unique<Pipeline>(Pipeline::from_preset(preset.value_or("tiny"), o));
      }
    } catch (const Error& e) {
      raise(var ? PyExc_OSError : PyExc_RuntimeError, e.what());
    }
  }

  nb::dict var_config() const { return var_config_dict(pipe_->var_config()); }
  nb::dict vae_config() const { return vae_config_dict(pipe_->vae_config()); }
  std::string device() const { return pipe_->backend_name(); }
  std::string backend_info() const { return pipe_->backend_info(); }
  std::string weights() const { return pipe_->weights_origin(); }
  int threads() const { return pipe_->threads(); }
  int adapter_streams() const { return pipe_->adapter_streams(); }
  int image_size() const {
    return pipe_->var_config().patch_nums.back() * pipe_->vae_config().downsample();
  }

  nb::tuple generate(const std::vector<int>& classes, const std::vector<uint64_t>& seeds,
                     const std::vector<double>& cfg, const std::vector<int>& top_k, const std::vector<double>& top_p,
                     const std::vector<double>& temperature, bool with_tokens, nb::object progress) const {
    const std::vector<ImageRequest> requests = make_requests(classes, seeds, cfg, top_k, top_p, temperature);
    GenerateOptions opts = options(progress);
    const GeneratedImages g = without_gil(false, [&] { return pipe_->generate(requests, opts); });
    return nb::make_tuple(images_array(g), with_tokens ? nb::cast(g.tokens) : nb::none());
  }

  nb::tuple edit(const std::vector<int>& classes, const std::vector<uint64_t>& seeds, const std::vector<double>& cfg,
                 const std::vector<int>& top_k, const std::vector<double>& top_p,
                 const std::vector<double>& temperature, const std::vector<TokenMaps>& inputs,
                 const std::vector<MaskIn>& masks, bool with_tokens, nb::object progress) const {
    const std::vector<ImageRequest> requests = make_requests(classes, seeds, cfg, top_k, top_p, temperature);
    if (inputs.size() != requests.size() || masks.size() != requests.size())
      raise(PyExc_ValueError, "one input and one mask per edit");
    std::vector<EditRequest> edits;
    for (size_t i = 0; i < requests.size(); ++i) {
      const MaskIn& m = masks[i];
      if (m.shape(0) != m.shape(1)) raise(PyExc_ValueError, "an edit mask must be square");
      edits.push_back({requests[i], inputs[i],
                       EditMask{static_cast<int64_t>(m.shape(0)), std::vector<float>(m.data(), m.data() + m.size())}});
    }
    GenerateOptions opts = options(progress);
    const GeneratedImages g = without_gil(true, [&] { return pipe_->edit(edits, opts); });
    return nb::make_tuple(images_array(g), with_tokens ? nb::cast(g.tokens) : nb::none());
  }

  std::vector<TokenMaps> tokenize(const ImagesIn& images) const {
    const Tensor t = images_tensor(images);
    return without_gil(true, [&] { return pipe_->tokenize(t); });
  }

  nb::ndarray<nb::numpy, uint8_t, nb::ndim<4>> reconstruct(const ImagesIn& images) const {
    const Tensor t = images_tensor(images);
    const GeneratedImages g = without_gil(true, [&] {
      const VarConfig& vc = pipe_->var_config();
      const int64_t side = static_cast<int64_t>(vc.patch_nums.back()) * pipe_->vae_config().downsample();
      if (t.shape[2] != side || t.shape[3] != side)
        throw Error("images are " + std::to_string(t.shape[3]) + "x" + std::to_string(t.shape[2]) +
                    ": this model takes " + std::to_string(side) + "x" + std::to_string(side));
      Tensor f_hat;
      pipe_->quantize(pipe_->encode(t), vc.patch_nums, &f_hat);
      Tensor img = pipe_->decode(f_hat);
      GeneratedImages out;
      out.count = img.shape[0];
      out.height = img.shape[2];
      out.width = img.shape[3];
      out.pixels = std::move(img.data);
      for (float& v : out.pixels) v = (v + 1.0f) * 0.5f;
      return out;
    });
    return images_array(g);
  }

  void attach_adapter(const std::string& path) {
    if (!std::filesystem::exists(path)) {
      errno = ENOENT;
      PyErr_SetFromErrnoWithFilename(PyExc_FileNotFoundError, path.c_str());
      throw nb::python_error();
    }
    ParScaleAdapter a;
    try {
      a = ParScaleAdapter::load(path);
    } catch (const Error& e) {
      raise(PyExc_OSError, e.what());
    }
    try {
      pipe_->attach_adapter(a);
    } catch (const Error& e) {
      raise(PyExc_ValueError, e.what());
    }
  }
  void detach_adapter() { pipe_->detach_adapter(); }

  void set_fast_modes(int cfg_until_scale, double prune, int prune_scales, int refine_from_scale) {
    const FastModes m{cfg_until_scale, prune, prune_scales, refine_from_scale};
    try {
      check_fast_modes(m, pipe_->var_config(), pipe_->has_refiner());
    } catch (const Error& e) {
      raise(PyExc_ValueError, e.what());
    }
    fast_ = m;
  }
  void attach_refiner(const std::string& var) {
    if (!std::filesystem::exists(var)) {
      errno = ENOENT;
      PyErr_SetFromErrnoWithFilename(PyExc_FileNotFoundError, var.c_str());
      throw nb::python_error();
    }
    try {
      pipe_->attach_refiner(var);
    } catch (const Error& e) {
      raise(PyExc_ValueError, e.what());
    }
  }
  void detach_refiner() {
    pipe_->detach_refiner();
    fast_.refine_from_scale = 0;
  }

  nb::dict plan_memory(const std::vector<int>& classes, const std::vector<double>& cfg) const {
    std::vector<ImageRequest> requests;
    for (size_t i = 0; i < classes.size(); ++i) requests.push_back({classes[i], 0, SamplingParams{cfg[i], 900, 0.95}});
    const MemoryPlan p = pipe_->plan_memory(requests);
    nb::dict d;
    d["weights"] = p.weights;
    d["kv_cache"] = p.kv_cache;
    d["activations"] = p.activations;
    d["workspace"] = p.workspace;
    d["total"] = p.total();
    d["rows"] = pipe_->rows_for(requests);
    return d;
  }

 private:
  static void check_backend_choice_or_throw(const PipelineOptions& o) {
    try {
      check_backend_choice(o.device, o.precision);
    } catch (const Error& e) {
      raise(PyExc_ValueError, e.what());
    }
    if (o.threads < 0) raise(PyExc_ValueError, "threads must be >= 0 (0: all cores)");
  }

  std::vector<ImageRequest> make_requests(const std::vector<int>& classes, const std::vector<uint64_t>& seeds,
                                          const std::vector<double>& cfg, const std::vector<int>& top_k,
                                          const std::vector<double>& top_p,
                                          const std::vector<double>& temperature) const {
    const size_t n = classes.size();
    if (seeds.size() != n || cfg.size() != n || top_k.size() != n || top_p.size() != n || temperature.size() != n)
      raise(PyExc_ValueError, "one seed and one set of sampling parameters per image");
    std::vector<ImageRequest> out;
    for (size_t i = 0; i < n; ++i) out.push_back({classes[i], seeds[i], {cfg[i], top_k[i], top_p[i], temperature[i]}});
    return out;
  }

  GenerateOptions options(nb::object progress) const {
    GenerateOptions opts;
    opts.fast = fast_;
    opts.progress = [progress](int si, int n) {
      nb::gil_scoped_acquire acquire;
      if (PyErr_CheckSignals() != 0) throw Interrupted{};
      if (!progress.is_none()) {
        try {
          progress(si + 1, n);
        } catch (nb::python_error& e) {
          e.restore();
          throw Interrupted{};
        }
      }
    };
    return opts;
  }

  std::unique_ptr<Pipeline> pipe_;
  FastModes fast_;  // every later generate() and edit()
};

nb::dict inspect(const std::string& path) {
  if (!std::filesystem::exists(path)) {
    errno = ENOENT;
    PyErr_SetFromErrnoWithFilename(PyExc_FileNotFoundError, path.c_str());
    throw nb::python_error();
  }
  try {
    const Checkpoint c = Checkpoint::open(path);
    nb::dict d;
    d["path"] = path;
    d["format"] = format_name(c.format());
    nb::list tensors;
    for (const TensorRecord& r : c.tensors()) {
      nb::dict t;
      t["name"] = r.name;
      t["dtype"] = dtype_name(r.dtype);
      t["shape"] = std::vector<int64_t>(r.shape.begin(), r.shape.end());
      tensors.append(t);
    }
    d["tensors"] = tensors;
    nb::dict meta;
    for (const auto& [k, v] : c.metadata()) meta[k.c_str()] = v;
    d["metadata"] = meta;
    d["kind"] = "unknown";
    try {
      d["config"] = var_config_dict(infer_var_config(c));
      d["kind"] = "var";
    } catch (const Error&) {
      try {
        d["config"] = vae_config_dict(infer_vae_config(c));
        d["kind"] = "vqvae";
      } catch (const Error&) {
        try {
          const ParScaleAdapter a = ParScaleAdapter::from_checkpoint(c);
          nb::dict cfg;
          cfg["streams"] = a.streams;
          cfg["prefix_tokens"] = a.prefix_tokens;
          cfg["smooth"] = a.smooth;
          cfg["depth"] = a.depth();
          d["config"] = cfg;
          d["kind"] = "parscale_adapter";
        } catch (const Error&) {
        }
      }
    }
    return d;
  } catch (const Error& e) {
    raise(PyExc_OSError, e.what());
  }
}

nb::ndarray<nb::numpy, float, nb::ndim<2>> mask_array(const EditMask& m) {
  auto* buf = new float[m.keep.size()];
  std::copy(m.keep.begin(), m.keep.end(), buf);
  nb::capsule owner(buf, [](void* p) noexcept { delete[] static_cast<float*>(p); });
  const size_t s = static_cast<size_t>(m.side);
  return nb::ndarray<nb::numpy, float, nb::ndim<2>>(buf, {s, s}, owner);
}

}  // namespace
}  // namespace varps::python

NB_MODULE(_varps, m) {
  using namespace varps;
  using namespace varps::python;
  m.doc() = "The varps engine (C++); use the `varps` package.";
  m.attr("__version__") = VARPS_VERSION;
  nb::class_<PyPipeline>(m, "_Pipeline")
      .def(nb::init<std::optional<std::string>, std::optional<std::string>, std::optional<std::string>,
                    const std::string&, const std::string&, int, bool>(),
           "var"_a.none(), "vae"_a.none(), "preset"_a.none(), "device"_a, "precision"_a, "threads"_a,
           "cuda_graphs"_a)
      .def("var_config", &PyPipeline::var_config)
      .def("vae_config", &PyPipeline::vae_config)
      .def("device", &PyPipeline::device)
      .def("backend_info", &PyPipeline::backend_info)
      .def("weights", &PyPipeline::weights)
      .def("threads", &PyPipeline::threads)
      .def("adapter_streams", &PyPipeline::adapter_streams)
      .def("image_size", &PyPipeline::image_size)
      .def("generate", &PyPipeline::generate, "classes"_a, "seeds"_a, "cfg"_a, "top_k"_a, "top_p"_a, "temperature"_a,
           "with_tokens"_a, "progress"_a.none())
      .def("edit", &PyPipeline::edit, "classes"_a, "seeds"_a, "cfg"_a, "top_k"_a, "top_p"_a, "temperature"_a,
           "inputs"_a, "masks"_a, "with_tokens"_a, "progress"_a.none())
      .def("tokenize", &PyPipeline::tokenize)
      .def("reconstruct", &PyPipeline::reconstruct)
      .def("attach_adapter", &PyPipeline::attach_adapter)
      .def("detach_adapter", &PyPipeline::detach_adapter)
      .def("set_fast_modes", &PyPipeline::set_fast_modes, "cfg_until_scale"_a, "prune"_a, "prune_scales"_a,
           "refine_from_scale"_a)
      .def("attach_refiner", &PyPipeline::attach_refiner)
      .def("detach_refiner", &PyPipeline::detach_refiner)
      .def("plan_memory", &PyPipeline::plan_memory);
  m.def("inspect", &inspect);
  m.def("box_mask", [](double y0, double x0, double y1, double x1, int64_t side, bool outpaint) {
    try {
      return mask_array(box_mask({y0, x0, y1, x1}, side, outpaint));
    } catch (const Error& e) {
      raise(PyExc_ValueError, e.what());
    }
  });
  m.def("mask_from_image", [](const nb::ndarray<const uint8_t, nb::ndim<3>, nb::c_contig, nb::device::cpu>& img,
                              int64_t side) {
    if (img.shape(2) != 3) raise(PyExc_ValueError, "a mask image must be uint8 [H, W, 3]");
    RgbImage rgb{static_cast<int>(img.shape(1)), static_cast<int>(img.shape(0)),
                 std::vector<uint8_t>(img.data(), img.data() + img.size())};
    try {
      return mask_array(mask_from_image(rgb, side));
    } catch (const Error& e) {
      raise(PyExc_ValueError, e.what());
    }
  });
}
