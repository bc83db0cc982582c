// gkharness is a conformance-test harness: it evaluates one Gatekeeper
// ConstraintTemplate + Constraint against one Kubernetes object with
// Gatekeeper's own engine (frameworks rego driver + gatekeeper's
// K8sValidationTarget), with external data enabled and pointed at a live
// provider over mutual TLS, the way the validating webhook reviews a CREATE.
//
// It prints one JSON object:
//
//	{"violations":[{"constraint":"..","msg":"..","enforcementAction":".."}],"errors":""}
//
// Exit codes: 0 the review ran (violations or not; provider failures show up
// as whatever the template makes of external_data's system_error), 1 the
// engine failed (driver, template, constraint or review), 2 bad flags,
// unreadable input files, or a Provider/client cert the framework rejects.
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/go-logr/logr"
	"github.com/open-policy-agent/frameworks/constraint/pkg/apis"
	edunversioned "github.com/open-policy-agent/frameworks/constraint/pkg/apis/externaldata/unversioned"
	edv1beta1 "github.com/open-policy-agent/frameworks/constraint/pkg/apis/externaldata/v1beta1"
	constraintclient "github.com/open-policy-agent/frameworks/constraint/pkg/client"
	"github.com/open-policy-agent/frameworks/constraint/pkg/client/drivers/rego"
	"github.com/open-policy-agent/frameworks/constraint/pkg/client/reviews"
	"github.com/open-policy-agent/frameworks/constraint/pkg/externaldata"
	"github.com/open-policy-agent/gatekeeper/v3/pkg/gator/reader"
	mutationtypes "github.com/open-policy-agent/gatekeeper/v3/pkg/mutation/types"
	"github.com/open-policy-agent/gatekeeper/v3/pkg/target"
	"github.com/open-policy-agent/gatekeeper/v3/pkg/util"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

type violation struct {
	Constraint        string `json:"constraint"`
	Msg               string `json:"msg"`
	EnforcementAction string `json:"enforcementAction"`
}

type output struct {
	Violations []violation `json:"violations"`
	Errors     string      `json:"errors"`
}

func emit(out output, code int) {
	if out.Violations == nil {
		out.Violations = []violation{}
	}
	_ = json.NewEncoder(os.Stdout).Encode(out)
	os.Exit(code)
}

func fail(code int, format string, args ...any) {
	emit(output{Errors: fmt.Sprintf(format, args...)}, code)
}

// readYAML reads a single-document YAML (or JSON) file as unstructured.
func readYAML(path string) (*unstructured.Unstructured, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return reader.ReadUnstructured(b)
}

func main() {
	templatePath := flag.String("template", "", "ConstraintTemplate YAML file")
	constraintPath := flag.String("constraint", "", "Constraint YAML file")
	objectPath := flag.String("object", "", "Kubernetes object YAML file to review as a CREATE")
	namespace := flag.String("namespace", "default", `namespace of the admission request ("" for cluster-scoped objects)`)
	providerName := flag.String("provider-name", "", "external data Provider name")
	providerURL := flag.String("provider-url", "", "external data Provider https URL")
	providerCA := flag.String("provider-ca", "", "PEM CA bundle that signed the provider's serving cert")
	clientCert := flag.String("client-cert", "", "PEM client certificate Gatekeeper presents to the provider (optional)")
	clientKey := flag.String("client-key", "", "PEM client key (required with -client-cert)")
	timeout := flag.Int("timeout", 3, "provider timeout in seconds")
	flag.CommandLine.SetOutput(os.Stderr)
	flag.Parse()

	switch {
	case flag.NArg() > 0:
		fail(2, "unexpected arguments: %v", flag.Args())
	case *templatePath == "" || *constraintPath == "" || *objectPath == "":
		fail(2, "-template, -constraint and -object are required")
	case *providerName == "" || *providerURL == "" || *providerCA == "":
		fail(2, "-provider-name, -provider-url and -provider-ca are required")
	case (*clientCert == "") != (*clientKey == ""):
		fail(2, "-client-cert and -client-key must be given together")
	}
	ctrllog.SetLogger(logr.Discard()) // certwatcher logs through controller-runtime

	scheme := runtime.NewScheme()
	if err := apis.AddToScheme(scheme); err != nil {
		fail(1, "building scheme: %v", err)
	}

	// Inputs.
	tu, err := readYAML(*templatePath)
	if err != nil {
		fail(2, "reading template: %v", err)
	}
	templ, err := reader.ToTemplate(scheme, tu)
	if err != nil {
		fail(2, "parsing template: %v", err)
	}
	constraint, err := readYAML(*constraintPath)
	if err != nil {
		fail(2, "reading constraint: %v", err)
	}
	obj, err := readYAML(*objectPath)
	if err != nil {
		fail(2, "reading object: %v", err)
	}
	caPEM, err := os.ReadFile(*providerCA)
	if err != nil {
		fail(2, "reading provider CA: %v", err)
	}

	// Provider, converted from v1beta1 the way gatekeeper's controller does.
	provider := &edv1beta1.Provider{
		ObjectMeta: metav1.ObjectMeta{Name: *providerName},
		Spec: edv1beta1.ProviderSpec{
			URL:      *providerURL,
			Timeout:  *timeout,
			CABundle: base64.StdEncoding.EncodeToString(caPEM),
		},
	}
	unversioned := &edunversioned.Provider{}
	if err := scheme.Convert(provider, unversioned, nil); err != nil {
		fail(1, "converting provider: %v", err)
	}
	providerCache := externaldata.NewCache()
	if err := providerCache.Upsert(unversioned); err != nil {
		fail(2, "registering provider: %v", err)
	}

	// Driver and client, as in gatekeeper's main.go setupControllers.
	args := []rego.Arg{rego.Tracing(false), rego.AddExternalDataProviderCache(providerCache), rego.Externs("inventory")}
	if *clientCert != "" {
		cw, err := certwatcher.New(*clientCert, *clientKey) // reads the pair once; no need to Start
		if err != nil {
			fail(2, "loading client cert/key: %v", err)
		}
		args = append(args, rego.EnableExternalDataClientAuth(), rego.AddExternalDataClientCertWatcher(cw))
	}
	driver, err := rego.New(args...)
	if err != nil {
		fail(1, "creating rego driver: %v", err)
	}
	client, err := constraintclient.NewClient(
		constraintclient.Targets(&target.K8sValidationTarget{}),
		constraintclient.Driver(driver),
		constraintclient.EnforcementPoints(util.WebhookEnforcementPoint),
	)
	if err != nil {
		fail(1, "creating constraint client: %v", err)
	}

	ctx := context.Background()
	if _, err := client.AddTemplate(ctx, templ); err != nil {
		fail(1, "adding template: %v", err)
	}
	if _, err := client.AddConstraint(ctx, constraint); err != nil {
		fail(1, "adding constraint: %v", err)
	}

	// Admission request for a CREATE, as the API server would send it.
	var ns *corev1.Namespace
	if *namespace != "" {
		obj.SetNamespace(*namespace)
		ns = &corev1.Namespace{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
			ObjectMeta: metav1.ObjectMeta{Name: *namespace, Labels: map[string]string{corev1.LabelMetadataName: *namespace}},
		}
	}
	raw, err := obj.MarshalJSON()
	if err != nil {
		fail(2, "encoding object: %v", err)
	}
	gvk := obj.GroupVersionKind()
	req := &admissionv1.AdmissionRequest{
		UID:       "gkharness",
		Kind:      metav1.GroupVersionKind{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind},
		Name:      obj.GetName(),
		Namespace: *namespace,
		Operation: admissionv1.Create,
		Object:    runtime.RawExtension{Raw: raw},
	}
	review := &target.AugmentedReview{
		AdmissionRequest: req,
		Namespace:        ns,
		Source:           mutationtypes.SourceTypeOriginal,
		IsAdmission:      true,
	}
	opts := []reviews.ReviewOpt{reviews.EnforcementPoint(util.WebhookEnforcementPoint)}
	if opt := util.NamespaceReviewOpt(ns, logr.Discard()); opt != nil {
		opts = append(opts, opt)
	}

	resp, err := client.Review(ctx, review, opts...)
	if err != nil {
		fail(1, "review: %v", err)
	}
	var out output
	for _, r := range resp.Results() {
		out.Violations = append(out.Violations, violation{
			Constraint:        r.Constraint.GetName(),
			Msg:               r.Msg,
			EnforcementAction: r.EnforcementAction,
		})
	}
	emit(out, 0)
}
