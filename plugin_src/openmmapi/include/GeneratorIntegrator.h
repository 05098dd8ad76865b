#ifndef STARMD_GENERATOR_INTEGRATOR_H_
#define STARMD_GENERATOR_INTEGRATOR_H_

/* openmm-starmd: STAR-MD as an OpenMM integrator (see docs/plugin.md). */

#include "openmm/Integrator.h"
#include "openmm/Kernel.h"
#include <string>
#include <vector>

namespace StarMD {

/**
 * An Integrator whose every step is one STAR-MD jump of the protein by the stride (the step size).
 *
 * One step: read all positions from the Context, coarse-grain the protein to residue frames, let
 * the STAR-MD core (TorchScript, KV cache of every earlier frame) sample the frame one stride
 * later, rebuild every protein atom with the rules of the Python StarMDGenerator, write the
 * positions back (constraints applied), draw Maxwell-Boltzmann velocities at the temperature,
 * optionally run Langevin relaxation steps with the System's forces, and advance the time by the
 * stride and the step count by one.
 *
 * The model file is the system-bound propagator written by
 * openmm_starmd.plugin.export_propagator(topology, positions, path, model) from a core exported by
 * "starmd export"; it holds the index tables of exactly one system.
 *
 * Units follow OpenMM: ps, K, 1/ps.  The same seed gives the same frames as the Python
 * StarMDGenerator with the same model, seed, stride and number of diffusion steps.
 */
class GeneratorIntegrator : public OpenMM::Integrator {
public:
    /**
     * @param modelFile          propagator file written by openmm_starmd.plugin.export_propagator
     * @param stride             time per jump (ps); it is the Integrator's step size
     * @param numDiffusionSteps  reverse-diffusion steps (network calls) per jump; 0: the number the model
     *                           file records (the weights' card, written by export_propagator)
     * @param randomSeed         seed of the rollout; 0 picks a new seed for every Context
     */
    GeneratorIntegrator(const std::string& modelFile, double stride, int numDiffusionSteps = 0, int randomSeed = 0);
    const std::string& getModelFile() const { return modelFile; }
    /** The stride (ps) between frames; the same as getStepSize(). */
    double getStride() const { return getStepSize(); }
    /** Reverse-diffusion steps per jump; 0 (the default): the model file's. */
    int getNumDiffusionSteps() const { return numDiffusionSteps; }
    void setNumDiffusionSteps(int steps);
    /** Probability-flow ODE instead of the reverse SDE. */
    bool getUseODE() const { return useODE; }
    void setUseODE(bool ode) { useODE = ode; }
    /** Scale of the reverse SDE's noise (1: the exact SDE); -1 (the default): the model file's. */
    double getNoiseScale() const { return noiseScale; }
    void setNoiseScale(double scale);
    int getRandomNumberSeed() const { return randomSeed; }
    void setRandomNumberSeed(int seed) { randomSeed = seed; }
    /** Temperature (K) of the velocities drawn after each jump and of the relaxation. */
    double getTemperature() const { return temperature; }
    void setTemperature(double kelvin);
    /** Friction coefficient (1/ps) of the Langevin relaxation. */
    double getFriction() const { return friction; }
    void setFriction(double perPs);
    /** LangevinMiddle steps run with the System's forces after each jump (0: none). */
    int getRelaxationSteps() const { return relaxationSteps; }
    void setRelaxationSteps(int steps);
    double getRelaxationStepSize() const { return relaxationStepSize; }
    void setRelaxationStepSize(double ps);
    /** Frames the KV cache holds before it is grown (by replaying the history). */
    int getCacheCapacity() const { return cacheCapacity; }
    void setCacheCapacity(int frames);
    /** torch device of the model, e.g. "cpu" or "cuda:0" ("cuda" is untested). */
    const std::string& getDevice() const { return device; }
    void setDevice(const std::string& name) { device = name; }
    /** Jumps made since the Context was created. */
    long long getNumJumps() const;
    /** Make `steps` jumps. */
    void step(int steps) override;

protected:
    void initialize(OpenMM::ContextImpl& context) override;
    void cleanup() override;
    std::vector<std::string> getKernelNames() override;
    double computeKineticEnergy() override;
    bool kineticEnergyRequiresForce() const override { return false; }

private:
    std::string modelFile, device;
    int numDiffusionSteps, randomSeed, relaxationSteps, cacheCapacity;
    bool useODE;
    double noiseScale, temperature, friction, relaxationStepSize;
    OpenMM::Kernel kernel;
};

} // namespace StarMD

#endif
