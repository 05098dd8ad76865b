/* ctest for the STAR-MD plugin.
 *
 *   TestGeneratorIntegrator api  <kernel plugin> <OpenMM plugin dir> <data dir>
 *       XML round trip; bad input (missing model file, a platform without the kernel).
 *   TestGeneratorIntegrator jump <kernel plugin> <OpenMM plugin dir> <data dir>
 *       jumps of a small exported model compared with the positions the Python StarMDGenerator
 *       computed for the same seed (data written by tests/test_plugin.py); atom-count mismatch.
 *       Exits 77 (skipped) when the data folder has no reference.txt.
 */
#include "GeneratorIntegrator.h"
#include "OpenMM.h"
#include "openmm/serialization/XmlSerializer.h"
#include "ReferencePlatform.h"
#include <cmath>
#include <fstream>
#include <functional>
#include <memory>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

using namespace OpenMM;
using namespace StarMD;
using std::string;
using std::vector;

static const int SKIPPED = 77;

#define CHECK(cond, msg) do { if (!(cond)) { std::stringstream s_; s_ << msg; throw std::runtime_error(s_.str()); } } while (0)

static void expectException(const std::function<void()>& action, const string& fragment) {
    try {
        action();
    }
    catch (const OpenMMException& e) {
        CHECK(string(e.what()).find(fragment) != string::npos, "message '" << e.what() << "' lacks '" << fragment << "'");
        std::cout << "  expected OpenMMException: " << e.what() << std::endl;
        return;
    }
    throw std::runtime_error("no OpenMMException (expected one containing '" + fragment + "')");
}

static System* particles(int n) {
    System* system = new System();
    for (int i = 0; i < n; i++)
        system->addParticle(12.0);
    return system;
}

static void testSerialization() {
    GeneratorIntegrator integrator("some/model.pt", 1250.0, 7, 13);
    integrator.setUseODE(true);
    integrator.setNoiseScale(0.75);
    integrator.setTemperature(310.5);
    integrator.setFriction(2.5);
    integrator.setRelaxationSteps(11);
    integrator.setRelaxationStepSize(0.003);
    integrator.setCacheCapacity(17);
    integrator.setIntegrationForceGroups(5);
    std::stringstream xml;
    XmlSerializer::serialize<Integrator>(&integrator, "Integrator", xml);
    Integrator* copy = XmlSerializer::deserialize<Integrator>(xml);
    GeneratorIntegrator* g = dynamic_cast<GeneratorIntegrator*>(copy);
    CHECK(g != NULL, "deserialized object is not a GeneratorIntegrator");
    CHECK(g->getModelFile() == "some/model.pt" && g->getStepSize() == 1250.0 && g->getNumDiffusionSteps() == 7, "basic fields differ");
    CHECK(g->getRandomNumberSeed() == 13 && g->getUseODE() && g->getNoiseScale() == 0.75 && g->getTemperature() == 310.5, "sampling fields differ");
    CHECK(g->getFriction() == 2.5 && g->getRelaxationSteps() == 11 && g->getRelaxationStepSize() == 0.003, "relaxation fields differ");
    CHECK(g->getCacheCapacity() == 17 && g->getIntegrationForceGroups() == 5 && g->getDevice() == "cpu", "other fields differ");
    std::stringstream again;
    XmlSerializer::serialize<Integrator>(g, "Integrator", again);
    CHECK(again.str() == xml.str(), "second serialisation differs");
    delete copy;
    std::cout << "serialization: ok" << std::endl;
}

/** The Reference platform under another name, created after the plugin registered its kernels. */
class PlatformWithoutKernel : public ReferencePlatform {
public:
    const string& getName() const override {
        static const string name = "WithoutStarMD";
        return name;
    }
};

static void testBadInput() {
    std::unique_ptr<System> system(particles(5));
    vector<Vec3> positions(5);
    expectException([&]() {
        GeneratorIntegrator integrator("no/such/propagator.pt", 1250.0);
        Context context(*system, integrator, Platform::getPlatformByName("Reference"));
    }, "not found");
    static PlatformWithoutKernel* other = new PlatformWithoutKernel();
    expectException([&]() {
        GeneratorIntegrator integrator("no/such/propagator.pt", 1250.0);
        Context context(*system, integrator, *other);
    }, "platform has no STAR-MD kernel");
    expectException([&]() { GeneratorIntegrator integrator("x.pt", -1.0); }, "stride");
    std::cout << "bad input: ok" << std::endl;
}

struct Reference {
    int numAtoms, seed, numSteps, numJumps;
    double stridePs;
    vector<double> masses;
    vector<Vec3> initial;
    vector<vector<Vec3> > jumps;
};

static bool readReference(const string& folder, Reference& ref) {
    std::ifstream in(folder + "/reference.txt");
    if (!in.good())
        return false;
    in >> ref.numAtoms >> ref.seed >> ref.stridePs >> ref.numSteps >> ref.numJumps;
    ref.masses.resize(ref.numAtoms);
    for (double& m : ref.masses)
        in >> m;
    auto readPositions = [&](vector<Vec3>& out) {
        out.resize(ref.numAtoms);
        for (Vec3& p : out)
            in >> p[0] >> p[1] >> p[2];
    };
    readPositions(ref.initial);
    ref.jumps.resize(ref.numJumps);
    for (auto& frame : ref.jumps)
        readPositions(frame);
    CHECK(in.good(), "reference.txt is truncated");
    return true;
}

static void testJumps(const string& folder, const Reference& ref) {
    const string model = folder + "/propagator.pt";
    for (const string& platformName : {string("CPU"), string("Reference")}) {
        const int numJumps = (platformName == "CPU" ? ref.numJumps : 1);  // the kernel is the same code on both
        System system;
        for (double m : ref.masses)
            system.addParticle(m);
        GeneratorIntegrator integrator(model, ref.stridePs, ref.numSteps, ref.seed);
        Context context(system, integrator, Platform::getPlatformByName(platformName));
        context.setPositions(ref.initial);
        for (int j = 0; j < numJumps; j++) {
            integrator.step(1);
            State state = context.getState(State::Positions);
            double worst = 0.0;
            for (int i = 0; i < ref.numAtoms; i++) {
                Vec3 d = state.getPositions()[i] - ref.jumps[j][i];
                worst = std::max(worst, std::sqrt(d.dot(d)));
            }
            std::cout << platformName << " jump " << j + 1 << ": max |C++ - Python| = " << worst << " nm" << std::endl;
            CHECK(worst < 1e-5, "jump " << j + 1 << " differs from the Python path by " << worst << " nm");
            CHECK(std::fabs(state.getTime() - (j + 1) * ref.stridePs) < 1e-9, "time " << state.getTime());
            CHECK(state.getStepCount() == j + 1, "step count " << state.getStepCount());
        }
        CHECK(integrator.getNumJumps() == numJumps, "getNumJumps " << integrator.getNumJumps());
    }
    // atom count that does not match the model's system
    std::unique_ptr<System> wrong(particles(ref.numAtoms + 2));
    expectException([&]() {
        GeneratorIntegrator integrator(model, ref.stridePs, ref.numSteps, ref.seed);
        Context context(*wrong, integrator, Platform::getPlatformByName("Reference"));
    }, "was exported for a system of " + std::to_string(ref.numAtoms) + " atoms");
}

int main(int argc, char* argv[]) {
    if (argc != 5) {
        std::cerr << "usage: TestGeneratorIntegrator api|jump <kernel plugin> <OpenMM plugin dir> <data dir>" << std::endl;
        return 2;
    }
    const string mode = argv[1];
    try {
        Platform::loadPluginsFromDirectory(argv[3]);
        Platform::loadPluginLibrary(argv[2]);
        if (mode == "api") {
            testSerialization();
            testBadInput();
        }
        else {
            Reference ref;
            if (!readReference(argv[4], ref)) {
                std::cout << "skipped: no " << argv[4] << "/reference.txt (tests/test_plugin.py writes it)" << std::endl;
                return SKIPPED;
            }
            testJumps(argv[4], ref);
        }
    }
    catch (const std::exception& e) {
        std::cout << "FAIL: " << e.what() << std::endl;
        return 1;
    }
    std::cout << "Done" << std::endl;
    return 0;
}
