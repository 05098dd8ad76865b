/* SWIG wrapper: StarMD::GeneratorIntegrator as a subclass of openmm.Integrator. */
%module starmdplugin

%import(module="openmm") "swig/OpenMMSwigHeaders.i"
%include "swig/typemaps.i"
%include <std_string.i>

%{
#include "GeneratorIntegrator.h"
#include "OpenMM.h"
#include "OpenMMAmoeba.h"
#include "OpenMMDrude.h"
#include "openmm/RPMDIntegrator.h"
#include "openmm/RPMDMonteCarloBarostat.h"
%}

%exception {
    try {
        $action
    } catch (std::exception &e) {
        PyObject* openmmModule = PyImport_AddModule("openmm");
        PyObject* exceptionType = openmmModule ? PyObject_GetAttrString(openmmModule, "OpenMMException") : NULL;
        PyErr_SetString(exceptionType ? exceptionType : PyExc_Exception, e.what());
        Py_XDECREF(exceptionType);
        return NULL;
    }
}

/* Errors (OpenMMException) arrive in Python as openmm.OpenMMException. */
%pythonbegin %{
import openmm
%}

/* Units as OpenMM's own wrappers handle them: setters accept a Quantity or a bare number in the
   default unit (ps, K, 1/ps); getters of dimensioned values return Quantities. */
%pythonprepend StarMD::GeneratorIntegrator::GeneratorIntegrator %{
    import os
    modelFile = os.fspath(modelFile)
    if openmm.unit.is_quantity(stride):
        stride = stride.value_in_unit(openmm.unit.picosecond)
%}
%pythonprepend StarMD::GeneratorIntegrator::setTemperature %{
    if openmm.unit.is_quantity(kelvin):
        kelvin = kelvin.value_in_unit(openmm.unit.kelvin)
%}
%pythonprepend StarMD::GeneratorIntegrator::setFriction %{
    if openmm.unit.is_quantity(perPs):
        perPs = perPs.value_in_unit(openmm.unit.picosecond**-1)
%}
%pythonprepend StarMD::GeneratorIntegrator::setRelaxationStepSize %{
    if openmm.unit.is_quantity(ps):
        ps = ps.value_in_unit(openmm.unit.picosecond)
%}
%pythonappend StarMD::GeneratorIntegrator::getStride %{
    val = openmm.unit.Quantity(val, openmm.unit.picosecond)
%}
%pythonappend StarMD::GeneratorIntegrator::getTemperature %{
    val = openmm.unit.Quantity(val, openmm.unit.kelvin)
%}
%pythonappend StarMD::GeneratorIntegrator::getFriction %{
    val = openmm.unit.Quantity(val, openmm.unit.picosecond**-1)
%}
%pythonappend StarMD::GeneratorIntegrator::getRelaxationStepSize %{
    val = openmm.unit.Quantity(val, openmm.unit.picosecond)
%}
%pythonappend StarMD::GeneratorIntegrator::cast %{
    if val is not None:
        val._owner = integrator  # the cast proxy does not own the C++ object: keep its owner alive
%}

namespace StarMD {

class GeneratorIntegrator : public OpenMM::Integrator {
public:
    GeneratorIntegrator(const std::string& modelFile, double stride, int numDiffusionSteps = 0, int randomSeed = 0);
    const std::string& getModelFile() const;
    double getStride() const;
    int getNumDiffusionSteps() const;
    void setNumDiffusionSteps(int steps);
    bool getUseODE() const;
    void setUseODE(bool ode);
    double getNoiseScale() const;
    void setNoiseScale(double scale);
    int getRandomNumberSeed() const;
    void setRandomNumberSeed(int seed);
    double getTemperature() const;
    void setTemperature(double kelvin);
    double getFriction() const;
    void setFriction(double perPs);
    int getRelaxationSteps() const;
    void setRelaxationSteps(int steps);
    double getRelaxationStepSize() const;
    void setRelaxationStepSize(double ps);
    int getCacheCapacity() const;
    void setCacheCapacity(int frames);
    const std::string& getDevice() const;
    void setDevice(const std::string& name);
    long long getNumJumps() const;
    virtual void step(int steps);

    %extend {
        /** The GeneratorIntegrator behind an Integrator (e.g. one returned by XmlSerializer.deserialize), or None. */
        static StarMD::GeneratorIntegrator* cast(OpenMM::Integrator* integrator) {
            return dynamic_cast<StarMD::GeneratorIntegrator*>(integrator);
        }
        /** True when the Integrator is a GeneratorIntegrator. */
        static bool isinstance(OpenMM::Integrator* integrator) {
            return dynamic_cast<StarMD::GeneratorIntegrator*>(integrator) != NULL;
        }
    }
};

}
