// Building a pipeline from checkpoints or presets, and its stage calls.
#include <set>

#include "model/pipeline_impl.hpp"
#include "varps/checkpoint.hpp"
#include "varps/error.hpp"

namespace varps {

namespace {

// Buffers of the official modules that inference derives or never reads.
const std::set<std::string> kVarIgnorable = {"lvl_1L", "attn_bias_for_masking"};
const std::set<std::string> kVaeIgnorable = {"quantize.ema_vocab_hit_SV"};

BackendOptions backend_options(const PipelineOptions& opts) {
  BackendOptions b;
  b.device = opts.device;
  b.threads = opts.threads;
  b.device_index = opts.device_index;
  b.precision = opts.precision;
  b.graphs = opts.cuda_graphs;
  return b;
}

}  // namespace

void check_token_map(const std::vector<int32_t>& tokens, int64_t expected, int64_t vocab, int scale) {
  if (static_cast<int64_t>(tokens.size()) != expected)
    throw Error("token map of scale " + std::to_string(scale) + " has " + std::to_string(tokens.size()) +
                " entries, expected " + std::to_string(expected));
  for (int32_t t : tokens)
    if (t < 0 || t >= vocab)
      throw Error("token " + std::to_string(t) + " at scale " + std::to_string(scale) + " is outside the codebook of " +
                  std::to_string(vocab));
}

Pipeline::Pipeline(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Pipeline::Pipeline(Pipeline&&) noexcept = default;
Pipeline& Pipeline::operator=(Pipeline&&) noexcept = default;
Pipeline::~Pipeline() = default;

Pipeline Pipeline::from_files(const std::filesystem::path& var_path, const std::filesystem::path& vae_path,
                              const PipelineOptions& opts) {
  auto impl = std::make_unique<Impl>();
  impl->backend = make_backend(backend_options(opts));
  const Checkpoint var_ckpt = Checkpoint::open(var_path);
  const Checkpoint vae_ckpt = Checkpoint::open(vae_path);
  const VarConfig vc = infer_var_config(var_ckpt);
  const VaeConfig ac = infer_vae_config(vae_ckpt);
  if (vc.cvae != ac.cvae || vc.vocab_size != ac.vocab_size)
    throw Error("VAR " + var_path.string() + " (vocab " + std::to_string(vc.vocab_size) + ", Cvae " +
                std::to_string(vc.cvae) + ") does not fit VQVAE " + vae_path.string() + " (vocab " +
                std::to_string(ac.vocab_size) + ", Cvae " + std::to_string(ac.cvae) + ")");
  auto vw = checkpoint_weights(var_ckpt);
  impl->var.emplace(*impl->backend, vc, *vw);
  vw->finish(kVarIgnorable);
  auto aw = checkpoint_weights(vae_ckpt);
  impl->vae.emplace(*impl->backend, ac, *aw, opts.vae_encoder);
  aw->finish(kVaeIgnorable);
  impl->origin = var_path.string() + " + " + vae_path.string();
  return Pipeline(std::move(impl));
}

Pipeline Pipeline::from_preset(const std::string& name, const PipelineOptions& opts, uint64_t weight_seed) {
  auto impl = std::make_unique<Impl>();
  impl->backend = make_backend(backend_options(opts));
  const VarConfig vc = preset_var_config(name);
  const VaeConfig ac = preset_vae_config(name);
  const std::string label = "random weights (preset " + name + ", seed " + std::to_string(weight_seed) + ")";
  auto w = random_weights(weight_seed, label);
  impl->var.emplace(*impl->backend, vc, *w);
  impl->vae.emplace(*impl->backend, ac, *w, opts.vae_encoder);
  impl->origin = label;
  return Pipeline(std::move(impl));
}

Pipeline Pipeline::vae_only(const std::filesystem::path& vae_path, const PipelineOptions& opts) {
  auto impl = std::make_unique<Impl>();
  impl->backend = make_backend(backend_options(opts));
  const Checkpoint ckpt = Checkpoint::open(vae_path);
  auto w = checkpoint_weights(ckpt);
  impl->vae.emplace(*impl->backend, infer_vae_config(ckpt), *w);
  w->finish(kVaeIgnorable);
  impl->origin = vae_path.string();
  return Pipeline(std::move(impl));
}

void Pipeline::attach_adapter(const ParScaleAdapter& adapter) {
  const VarConfig& vc = var_config();
  adapter.check_fits(vc);  // a refused adapter leaves the attached one in place
  impl_->drop_state();     // its recordings point at the old adapter
  impl_->adapter.reset();  // the old adapter's memory goes before the new one's arrives
  impl_->adapter.emplace(*impl_->backend, adapter, vc);
}

namespace {

// A refiner must read the same token maps the pipeline's model writes.
void check_refiner_fits(const VarConfig& main, const VarConfig& r, const std::string& what) {
  const auto differs = [&](const std::string& field, const std::string& a, const std::string& b) {
    throw Error("refiner " + what + " has " + field + " " + b + ", the model " + a + ": a refiner needs the same");
  };
  if (r.patch_nums != main.patch_nums) {
    std::string a, b;
    for (int p : main.patch_nums) a += (a.empty() ? "" : ",") + std::to_string(p);
    for (int p : r.patch_nums) b += (b.empty() ? "" : ",") + std::to_string(p);
    differs("patch_nums", a, b);
  }
  if (r.vocab_size != main.vocab_size) differs("vocab", std::to_string(main.vocab_size), std::to_string(r.vocab_size));
  if (r.cvae != main.cvae) differs("Cvae", std::to_string(main.cvae), std::to_string(r.cvae));
  if (r.num_classes != main.num_classes)
    differs("classes", std::to_string(main.num_classes), std::to_string(r.num_classes));
}

}  // namespace

void Pipeline::attach_refiner(const std::filesystem::path& var_path) {
  const Checkpoint ckpt = Checkpoint::open(var_path);
  const VarConfig rc = infer_var_config(ckpt);
  check_refiner_fits(var_config(), rc, var_path.string());
  impl_->drop_state();
  impl_->refiner.reset();
  auto w = checkpoint_weights(ckpt);
  impl_->refiner.emplace(*impl_->backend, rc, *w);
  w->finish(kVarIgnorable);
}

void Pipeline::attach_refiner_preset(const std::string& name, uint64_t weight_seed) {
  const VarConfig rc = preset_var_config(name);
  check_refiner_fits(var_config(), rc, "preset " + name);
  impl_->drop_state();
  impl_->refiner.reset();
  auto w = random_weights(weight_seed, "random weights (refiner preset " + name + ")");
  impl_->refiner.emplace(*impl_->backend, rc, *w);
}

void Pipeline::detach_refiner() {
  impl_->drop_state();
  impl_->refiner.reset();
}

bool Pipeline::has_refiner() const { return impl_->refiner.has_value(); }

void Pipeline::detach_adapter() {
  impl_->drop_state();
  impl_->adapter.reset();
}

uint64_t Pipeline::parameters() const {
  return (impl_->var ? impl_->var->parameters() : 0) + impl_->vae->parameters() +
         (impl_->adapter ? impl_->adapter->parameters : 0);
}

int Pipeline::adapter_streams() const { return impl_->adapter ? static_cast<int>(impl_->adapter->streams) : 1; }

const VarConfig& Pipeline::var_config() const {
  if (!impl_->var) throw Error("this pipeline has no VAR transformer");
  return impl_->var->config();
}
const VaeConfig& Pipeline::vae_config() const { return impl_->vae->config(); }
std::string Pipeline::weights_origin() const { return impl_->origin; }
int Pipeline::threads() const { return impl_->backend->threads(); }
std::string Pipeline::backend_name() const { return impl_->backend->name(); }
std::string Pipeline::backend_info() const { return impl_->backend->info(); }
DeviceMemoryStats Pipeline::device_memory() const { return impl_->backend->device_memory(); }
void Pipeline::reset_peak_device_memory() const { impl_->backend->reset_peak_memory(); }
std::unique_ptr<WorkClock> Pipeline::work_clock() const { return impl_->backend->work_clock(); }

std::unique_ptr<GenerationState> Pipeline::Impl::take_state(const GenerationShape& shape) const {
  std::lock_guard<std::mutex> lock(state_mutex_);
  if (state_ && state_->shape == shape) return std::move(state_);
  state_.reset();  // another shape's memory goes before the new state's arrives
  return nullptr;
}

void Pipeline::Impl::keep_state(std::unique_ptr<GenerationState> state) const {
  std::lock_guard<std::mutex> lock(state_mutex_);
  state_ = std::move(state);
}

void Pipeline::Impl::drop_state() const {
  std::lock_guard<std::mutex> lock(state_mutex_);
  state_.reset();
}

FeatureMap Pipeline::Impl::upload_map(const Tensor& t) const {
  if (t.shape.size() != 4) throw Error("expected a [N, C, H, W] tensor, got " + shape_str(t.shape));
  FeatureMap m{backend->upload(t), t.shape[0], t.shape[1], t.shape[2], t.shape[3]};
  return m;
}

Tensor Pipeline::Impl::download_map(const FeatureMap& m) const {
  Tensor t({m.n, m.c, m.h, m.w});
  backend->download(m.data.data(), m.size(), t.ptr());
  return t;
}

std::vector<Tensor> Pipeline::tokens_to_f_hats(const std::vector<std::vector<int32_t>>& tokens, int64_t images,
                                               const std::vector<int>& patch_nums) const {
  const Vqvae& vae = *impl_->vae;
  if (tokens.size() != patch_nums.size())
    throw Error("expected " + std::to_string(patch_nums.size()) + " token maps, got " + std::to_string(tokens.size()));
  const int64_t S = patch_nums.back();
  FeatureMap f_hat = vae.zero_map(images, vae.config().cvae, S, S);
  const ResidualMaps maps = vae.new_residual_maps(images, S);
  std::vector<Tensor> out;
  for (size_t si = 0; si < tokens.size(); ++si) {
    const int64_t n = images * patch_nums[si] * patch_nums[si];
    check_token_map(tokens[si], n, vae.config().vocab_size, static_cast<int>(si));
    Array<int32_t> idx = impl_->backend->alloc_i32(static_cast<size_t>(n));
    impl_->backend->upload_into_i32(tokens[si].data(), tokens[si].size(), idx.data());
    vae.add_scale(static_cast<int>(si), patch_nums, idx.data(), f_hat, maps);
    out.push_back(impl_->download_map(f_hat));
  }
  return out;
}

Tensor Pipeline::decode(const Tensor& f_hat) const {
  return impl_->download_map(impl_->vae->decode(impl_->upload_map(f_hat)));
}

Tensor Pipeline::encode(const Tensor& img) const {
  return impl_->download_map(impl_->vae->encode(impl_->upload_map(img)));
}

std::vector<std::vector<int32_t>> Pipeline::quantize(const Tensor& f, const std::vector<int>& patch_nums,
                                                     Tensor* f_hat) const {
  FeatureMap fh;
  auto idx = impl_->vae->quantize(impl_->upload_map(f), patch_nums, f_hat ? &fh : nullptr);
  if (f_hat) *f_hat = impl_->download_map(fh);
  return idx;
}

std::vector<TokenMaps> Pipeline::tokenize(const Tensor& images) const {
  const VarConfig& vc = var_config();
  const int64_t side = static_cast<int64_t>(vc.patch_nums.back()) * vae_config().downsample();
  if (images.shape.size() != 4 || images.shape[1] != 3 || images.shape[2] != side || images.shape[3] != side)
    throw Error("images to tokenize are " + shape_str(images.shape) + ": this model takes [N, 3, " +
                std::to_string(side) + ", " + std::to_string(side) + "]");
  const int64_t B = images.shape[0];
  const std::vector<std::vector<int32_t>> maps = quantize(encode(images), vc.patch_nums);
  std::vector<TokenMaps> out(static_cast<size_t>(B), TokenMaps(vc.patch_nums.size()));
  for (size_t s = 0; s < vc.patch_nums.size(); ++s) {
    const int64_t l = static_cast<int64_t>(vc.patch_nums[s]) * vc.patch_nums[s];
    for (int64_t b = 0; b < B; ++b) out[b][s].assign(maps[s].begin() + b * l, maps[s].begin() + (b + 1) * l);
  }
  return out;
}

}  // namespace varps
