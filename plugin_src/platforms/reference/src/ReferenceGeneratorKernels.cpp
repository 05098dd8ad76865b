#include "ReferenceGeneratorKernels.h"
#include "openmm/Context.h"
#include "openmm/OpenMMException.h"
#include "openmm/Platform.h"
#include "openmm/System.h"
#include "openmm/internal/windowsExport.h"
#include "ReferenceConstraints.h"
#include "ReferencePlatform.h"
#include "openmm/internal/ContextImpl.h"
#include <ATen/CPUGeneratorImpl.h>
#include <torch/csrc/jit/runtime/graph_executor.h>
#include <algorithm>
#include <cmath>
#include <fstream>
#include <random>

using namespace OpenMM;
using namespace StarMD;
using std::string;
using std::vector;

static const double PS_PER_NS = 1000.0;
static const double BOLTZ_KJ_PER_MOL_K = 0.00831446261815324;  // R / 1000
// seed streams, as in openmm_starmd.model.rollout: 0 context frame, 1 sample (attempt 0)
static const uint64_t STREAM_CONTEXT = 0, STREAM_SAMPLE = 1, STREAM_VELOCITIES = 1001, STREAM_LANGEVIN = 1002;
static const uint64_t SEED_MODULUS = 1ULL << 62;
static const double RECTANGULAR_TOL = 1e-8;  // nm; numpy.allclose(box - diag, 0) in rebuild_positions
static const size_t MAX_NAMED = 5;  // atoms named in one message

uint64_t StarMD::deriveSeed(uint64_t seed, uint64_t frame, uint64_t stream) {
    uint64_t x = seed * 0x9E3779B97F4A7C15ULL + frame * 0xBF58476D1CE4E5B9ULL + stream * 0x94D049BB133111EBULL;
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ULL;
    x ^= x >> 27;
    return x % SEED_MODULUS;
}

namespace {

/** Runs a module method, turning TorchScript errors into OpenMMExceptions. */
c10::IValue call(torch::jit::Module& module, const string& method, const vector<c10::IValue>& args) {
    try {
        // TorchScript's optimising executor re-specialises a module that is started a second time
        // wrongly (its frames then differ from the eager core's); the plain executor is correct and,
        // measured on a CPU, as fast.
        torch::jit::GraphOptimizerEnabledGuard plainExecutor(false);
        return module.get_method(method)(args);
    }
    catch (const c10::Error& e) {
        throw OpenMMException("GeneratorIntegrator: the STAR-MD model failed in " + method + "(): " + e.what_without_backtrace());
    }
}

/** Restores torch's global CPU generator on scope exit (the jump seeds it, as the Python Rollout does inside fork_rng). */
class KeepTorchRNG {
public:
    KeepTorchRNG() : generator(at::detail::getDefaultCPUGenerator()), state(generator.get_state()) {}
    ~KeepTorchRNG() { generator.set_state(state); }
private:
    at::Generator generator;
    at::Tensor state;
};

torch::Tensor toTensor(const vector<Vec3>& v) {
    return torch::from_blob(const_cast<Vec3*>(v.data()), {(long) v.size(), 3}, torch::kFloat64).clone();
}

} // namespace

void ReferenceIntegrateGeneratorStepKernel::initialize(const System& system, const GeneratorIntegrator& integrator) {
    const string& file = integrator.getModelFile();
    if (!std::ifstream(file).good())
        throw OpenMMException("GeneratorIntegrator: model file '" + file + "' not found; write it with "
                              "openmm_starmd.plugin.export_propagator(topology, positions, path, model)");
    try {
        torchDevice = torch::Device(integrator.getDevice());
    }
    catch (const c10::Error& e) {
        throw OpenMMException("GeneratorIntegrator: unknown torch device '" + integrator.getDevice() + "' (expected e.g. 'cpu' or 'cuda:0')");
    }
    try {
        module = torch::jit::load(file, torch::kCPU);  // the system geometry runs on the CPU, next to the Context
    }
    catch (const c10::Error& e) {
        throw OpenMMException("GeneratorIntegrator: cannot load model file '" + file + "' as TorchScript: " + e.what_without_backtrace());
    }
    if (!module.hasattr("num_atoms") || !module.find_method("sample") || !module.find_method("rebuild")
        || !module.find_method("rebuild_periodic"))
        throw OpenMMException("GeneratorIntegrator: '" + file + "' is not a STAR-MD propagator; a core written by 'starmd export' "
                              "must first be bound to the system with openmm_starmd.plugin.export_propagator");
    int numAtoms = (int) module.attr("num_atoms").toInt();
    if (numAtoms != system.getNumParticles())
        throw OpenMMException("GeneratorIntegrator: model file '" + file + "' was exported for a system of " + std::to_string(numAtoms)
                              + " atoms, but this System has " + std::to_string(system.getNumParticles())
                              + " particles; export the propagator from this system's topology");
    module.eval();
    if (!torchDevice.is_cpu()) {  // the network moves to the device (untested here: no GPU)
        try {
            module.attr("core").toModule().to(torchDevice);
            call(module, "set_core_device", {c10::IValue(integrator.getDevice())});
        }
        catch (const c10::Error& e) {
            throw OpenMMException("GeneratorIntegrator: cannot move the model to '" + integrator.getDevice() + "': " + e.what_without_backtrace());
        }
    }
    atomLabels.clear();
    if (module.hasattr("atom_labels"))  // propagators exported before the labels existed name particles by index
        for (const auto& label : module.attr("atom_labels").toListRef())
            atomLabels.push_back(label.toStringRef());
    bondTree.clear();
    if (module.hasattr("bond_tree")) {
        torch::Tensor tree = module.attr("bond_tree").toTensor().to(torch::kLong).contiguous();
        const int64_t* t = tree.data_ptr<int64_t>();
        for (int64_t e = 0; e < tree.size(0); e++)
            bondTree.push_back(std::make_pair((int) t[2 * e], (int) t[2 * e + 1]));
    }
    // the weights' sampler, recorded by export_propagator; files written before it recorded one: 50 steps, noise 0.5
    fileNumSteps = module.hasattr("num_steps") ? (int) module.attr("num_steps").toInt() : 50;
    fileNoiseScale = module.hasattr("noise_scale") ? module.attr("noise_scale").toDouble() : 0.5;
    masses.resize(system.getNumParticles());
    for (int i = 0; i < system.getNumParticles(); i++)
        masses[i] = system.getParticleMass(i);
    int s = integrator.getRandomNumberSeed();
    seed = (s == 0 ? (uint64_t) std::random_device()() : (uint64_t) (int64_t) s);
    started = false;
    historyRots.clear();
    historyTrans.clear();
}

void ReferenceIntegrateGeneratorStepKernel::start(int capacityFrames) {
    call(module, "start", {c10::IValue((int64_t) capacityFrames)});
    capacity = capacityFrames;
    started = true;
}

void ReferenceIntegrateGeneratorStepKernel::appendContext(const torch::Tensor& rots, const torch::Tensor& trans) {
    at::manual_seed(deriveSeed(seed, historyTrans.size(), STREAM_CONTEXT));
    call(module, "append", {rots, trans, log10Stride});
    historyRots.push_back(rots);
    historyTrans.push_back(trans);
}

void ReferenceIntegrateGeneratorStepKernel::checkFinite(const vector<Vec3>& positions) const {
    vector<size_t> bad;
    for (size_t i = 0; i < positions.size(); i++)
        if (!(std::isfinite(positions[i][0]) && std::isfinite(positions[i][1]) && std::isfinite(positions[i][2])))
            bad.push_back(i);
    if (bad.empty())
        return;
    string names;
    for (size_t k = 0; k < bad.size() && k < MAX_NAMED; k++) {
        size_t i = bad[k];
        names += (k > 0 ? ", " : "") + (i < atomLabels.size() ? atomLabels[i] + " (atom index " : string("particle (index "))
                 + std::to_string(i) + ")";
    }
    if (bad.size() > MAX_NAMED)
        names += " and " + std::to_string(bad.size() - MAX_NAMED) + " more";
    throw OpenMMException("GeneratorIntegrator: " + std::to_string(bad.size()) + " atom(s) have NaN or infinite coordinates: "
                          + names + "; set finite positions (e.g. the input structure or a saved state) before stepping");
}

void ReferenceIntegrateGeneratorStepKernel::makeWhole(vector<Vec3>& positions, const Vec3* box) const {
    // as openmm_starmd.openmm.coarse_grain.make_whole: every tree bond at its minimum image, shifts
    // accumulated from parent to child in breadth-first order (round half to even, as numpy.round)
    vector<Vec3> shift(positions.size());
    bool crossed = false;
    for (const auto& edge : bondTree) {
        Vec3 delta = positions[edge.second] - positions[edge.first], image = delta;
        for (int k = 2; k >= 0; k--)
            image -= box[k] * std::nearbyint(image[k] / box[k][k]);
        Vec3 s = image - delta;
        crossed = crossed || s[0] != 0 || s[1] != 0 || s[2] != 0;
        shift[edge.second] = shift[edge.first] + s;
    }
    if (crossed)
        for (size_t i = 0; i < positions.size(); i++)
            positions[i] += shift[i];
}

void ReferenceIntegrateGeneratorStepKernel::execute(ContextImpl& context, const GeneratorIntegrator& integrator) {
    // a failed jump leaves the Context as it was and the integrator usable: the context frames go back to
    // those before the call, and the KV cache is rebuilt from them at the next jump
    size_t numContext = historyTrans.size();
    vector<Vec3> positions, velocities;
    context.getPositions(positions);
    context.getVelocities(velocities);
    double time = context.getTime();
    try {
        jump(context, integrator);
    }
    catch (...) {
        historyRots.resize(numContext);
        historyTrans.resize(numContext);
        started = false;
        context.setPositions(positions);
        context.setVelocities(velocities);
        context.setTime(time);
        throw;
    }
}

void ReferenceIntegrateGeneratorStepKernel::jump(ContextImpl& context, const GeneratorIntegrator& integrator) {
    torch::NoGradGuard noGrad;
    KeepTorchRNG keepRNG;
    const System& system = context.getSystem();
    double startTime = context.getTime();
    vector<Vec3> positions;
    context.getPositions(positions);
    checkFinite(positions);
    Vec3 box[3];
    if (system.usesPeriodicBoundaryConditions()) {
        context.getPeriodicBoxVectors(box[0], box[1], box[2]);
        makeWhole(positions, box);
    }
    torch::Tensor x = toTensor(positions);
    log10Stride = torch::full({1}, std::log10(integrator.getStepSize() / PS_PER_NS), torch::dtype(torch::kFloat32));

    // the KV cache needs a slot for the context frame and a scratch slot for the frame being sampled; it is
    // (re)started with the context frames replayed when it is full, and after a failed jump
    if (!started || (int) historyTrans.size() + 2 > capacity) {
        vector<torch::Tensor> rots = historyRots, trans = historyTrans;
        historyRots.clear();
        historyTrans.clear();
        int needed = (int) rots.size() + 2;
        start(!started ? std::max(std::max(integrator.getCacheCapacity(), capacity), needed) : std::max(needed, 2 * capacity));
        for (size_t k = 0; k < rots.size(); k++)
            appendContext(rots[k], trans[k]);
    }
    // the structure the Context holds now joins the context (lazily: it may have been moved since the last jump)
    auto frame = call(module, "coarse", {x}).toTuple();
    appendContext(frame->elements()[0].toTensor(), frame->elements()[1].toTensor());

    at::manual_seed(deriveSeed(seed, historyTrans.size(), STREAM_SAMPLE));
    int numSteps = integrator.getNumDiffusionSteps() > 0 ? integrator.getNumDiffusionSteps() : fileNumSteps;
    double noiseScale = integrator.getNoiseScale() >= 0 ? integrator.getNoiseScale() : fileNoiseScale;
    auto sample = call(module, "sample", {log10Stride, (int64_t) numSteps, integrator.getUseODE(), noiseScale}).toTuple();
    // solvent, ions and ligands near the protein move with it: minimum-image distances in a
    // rectangular periodic box, plain distances otherwise (as StarMDGenerator does)
    const auto& f = sample->elements();
    bool rectangular = false;
    if (system.usesPeriodicBoundaryConditions()) {
        rectangular = std::fabs(box[0][1]) <= RECTANGULAR_TOL && std::fabs(box[0][2]) <= RECTANGULAR_TOL && std::fabs(box[1][0]) <= RECTANGULAR_TOL
                      && std::fabs(box[1][2]) <= RECTANGULAR_TOL && std::fabs(box[2][0]) <= RECTANGULAR_TOL && std::fabs(box[2][1]) <= RECTANGULAR_TOL;
    }
    c10::IValue result;
    if (rectangular) {
        vector<Vec3> rows(box, box + 3);
        result = call(module, "rebuild_periodic", {x, toTensor(rows), f[0], f[1], f[2]});
    }
    else
        result = call(module, "rebuild", {x, f[0], f[1], f[2]});
    torch::Tensor rebuilt = result.toTensor().to(torch::kCPU, torch::kFloat64).contiguous();
    if (!torch::isfinite(rebuilt).all().item<bool>())
        throw OpenMMException("GeneratorIntegrator: the model produced non-finite coordinates at jump " + std::to_string(numJumps + 1));
    const double* data = rebuilt.data_ptr<double>();
    for (size_t i = 0; i < positions.size(); i++)
        positions[i] = Vec3(data[3 * i], data[3 * i + 1], data[3 * i + 2]);
    context.setPositions(positions);
    if (system.getNumConstraints() > 0)
        context.applyConstraints(integrator.getConstraintTolerance());
    drawVelocities(context, integrator);
    if (integrator.getRelaxationSteps() > 0)
        relax(context, integrator);
    context.setTime(startTime + integrator.getStepSize());
    context.setStepCount(context.getStepCount() + 1);
    numJumps++;
}

void ReferenceIntegrateGeneratorStepKernel::drawVelocities(ContextImpl& context, const GeneratorIntegrator& integrator) {
    if (integrator.getTemperature() <= 0) {
        context.setVelocities(vector<Vec3>(masses.size()));
        return;
    }
    int velocitySeed = (int) (deriveSeed(seed, numJumps, STREAM_VELOCITIES) % 2147483646ULL) + 1;
    context.getOwner().setVelocitiesToTemperature(integrator.getTemperature(), velocitySeed);
}

void ReferenceIntegrateGeneratorStepKernel::relax(ContextImpl& context, const GeneratorIntegrator& integrator) {
    // LangevinMiddle (Zhang et al. 2019) exactly as OpenMM's Reference/CPU LangevinMiddleIntegrator, with the
    // Context's forces and its constraint algorithm (the Reference platform data, as openmm-torch uses it)
    const double dt = integrator.getRelaxationStepSize(), tol = integrator.getConstraintTolerance();
    const double kT = BOLTZ_KJ_PER_MOL_K * integrator.getTemperature();
    const double a = std::exp(-integrator.getFriction() * dt), b = std::sqrt(1.0 - a * a);
    ReferencePlatform::PlatformData* data = static_cast<ReferencePlatform::PlatformData*>(context.getPlatformData());
    ReferenceConstraints* constraints = (context.getSystem().getNumConstraints() > 0 ? data->constraints : NULL);
    std::mt19937_64 rng(deriveSeed(seed, numJumps, STREAM_LANGEVIN));
    std::normal_distribution<double> gauss(0.0, 1.0);
    const size_t n = masses.size();
    vector<double> inverseMasses(n);
    for (size_t i = 0; i < n; i++)
        inverseMasses[i] = (masses[i] > 0 ? 1.0 / masses[i] : 0.0);
    vector<Vec3> x, v, f, xNew(n);
    for (int step = 0; step < integrator.getRelaxationSteps(); step++) {
        context.updateContextState();  // CMMotionRemover, barostats: may change positions and velocities
        context.getPositions(x);
        context.getVelocities(v);
        context.calcForcesAndEnergy(true, false, integrator.getIntegrationForceGroups());
        context.getForces(f);
        for (size_t i = 0; i < n; i++)
            v[i] += f[i] * (dt * inverseMasses[i]);
        if (constraints != NULL)
            constraints->applyToVelocities(x, v, inverseMasses, tol);
        for (size_t i = 0; i < n; i++) {
            if (masses[i] == 0) {
                xNew[i] = x[i];
                continue;
            }
            xNew[i] = x[i] + v[i] * (0.5 * dt);
            v[i] = v[i] * a + Vec3(gauss(rng), gauss(rng), gauss(rng)) * (b * std::sqrt(kT * inverseMasses[i]));
            xNew[i] += v[i] * (0.5 * dt);
        }
        if (constraints != NULL) {
            // the constraint displacement corrects the velocities too
            vector<Vec3> unconstrained = xNew;
            constraints->apply(x, xNew, inverseMasses, tol);
            for (size_t i = 0; i < n; i++)
                if (masses[i] > 0)
                    v[i] += (xNew[i] - unconstrained[i]) * (1.0 / dt);
        }
        context.setPositions(xNew);
        context.computeVirtualSites();
        context.setVelocities(v);
    }
}

double ReferenceIntegrateGeneratorStepKernel::computeKineticEnergy(ContextImpl& context, const GeneratorIntegrator& integrator) {
    vector<Vec3> v;
    context.getVelocities(v);
    double energy = 0.0;
    for (size_t i = 0; i < masses.size(); i++)
        energy += 0.5 * masses[i] * v[i].dot(v[i]);
    return energy;
}

// Called by Platform::loadPluginLibrary: register the kernel on the Reference and CPU platforms
// (the CPU platform runs Reference kernels for what it does not implement itself).
extern "C" OPENMM_EXPORT void registerPlatforms() {
}

extern "C" OPENMM_EXPORT void registerKernelFactories() {
    for (int i = 0; i < Platform::getNumPlatforms(); i++) {
        Platform& platform = Platform::getPlatform(i);
        if (platform.getName() == "Reference" || platform.getName() == "CPU")
            platform.registerKernelFactory(IntegrateGeneratorStepKernel::Name(), new ReferenceGeneratorKernelFactory());
    }
}

KernelImpl* ReferenceGeneratorKernelFactory::createKernelImpl(std::string name, const Platform& platform, ContextImpl& context) const {
    if (name == IntegrateGeneratorStepKernel::Name())
        return new ReferenceIntegrateGeneratorStepKernel(name, platform);
    throw OpenMMException("ReferenceGeneratorKernelFactory: unknown kernel '" + name + "'");
}
