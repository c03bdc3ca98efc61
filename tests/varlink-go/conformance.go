// conformance.go - traind driven by the reference varlink implementation
// (github.com/varlink/go), a client no one here wrote.
//
//	conformance SOCKET
//
// Its client calls org.varlink.service.GetInfo (which it sends with
// "parameters": null) and GetInterfaceDescription; its IDL parser reads
// both descriptions; the io.traind client code its generator made from
// daemon/proto/io.traind.varlink (package iotraind, built with this program)
// starts a small job, waits for it, reads it back and provokes the errors.
// Every reply and every error is also read raw and checked against the
// parsed interface: each field declared, each non-optional declared field
// present with its type; errors must be declared by the interface of their
// name, and invalid parameters must be the standard
// org.varlink.service.InvalidParameter naming the parameter, so a generic
// client recognises them. Prints one line per check; exits 1 if any failed.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"iotraind"

	"github.com/varlink/go/varlink"
	"github.com/varlink/go/varlink/idl"
)

var failed int

func check(ok bool, format string, args ...interface{}) bool {
	if ok {
		fmt.Printf("ok: "+format+"\n", args...)
	} else {
		fmt.Printf("FAIL: "+format+"\n", args...)
		failed++
	}
	return ok
}

var ifaces = map[string]*idl.IDL{}

func findError(name string) *idl.Error {
	dot := strings.LastIndex(name, ".")
	i := ifaces[name[:dot]]
	if i == nil {
		return nil
	}
	for _, e := range i.Errors {
		if e.Name == name[dot+1:] {
			return e
		}
	}
	return nil
}

func findMethod(name string) *idl.Method {
	dot := strings.LastIndex(name, ".")
	i := ifaces[name[:dot]]
	if i == nil {
		return nil
	}
	for _, m := range i.Methods {
		if m.Name == name[dot+1:] {
			return m
		}
	}
	return nil
}

// Does a JSON value (as encoding/json decodes it) have the IDL type t?
func typeOK(t *idl.Type, v interface{}) bool {
	switch t.Kind {
	case idl.TypeMaybe:
		return v == nil || typeOK(t.ElementType, v)
	case idl.TypeBool:
		_, ok := v.(bool)
		return ok
	case idl.TypeInt:
		f, ok := v.(float64)
		return ok && f == float64(int64(f))
	case idl.TypeFloat:
		_, ok := v.(float64)
		return ok
	case idl.TypeString, idl.TypeEnum:
		_, ok := v.(string)
		return ok
	case idl.TypeArray:
		a, ok := v.([]interface{})
		if !ok {
			return false
		}
		for _, e := range a {
			if !typeOK(t.ElementType, e) {
				return false
			}
		}
		return true
	case idl.TypeMap, idl.TypeObject:
		_, ok := v.(map[string]interface{})
		return ok
	case idl.TypeStruct:
		m, ok := v.(map[string]interface{})
		return ok && fieldsOK(t, m) == ""
	case idl.TypeAlias:
		for _, i := range ifaces {
			for _, a := range i.Aliases {
				if a.Name == t.Alias {
					return typeOK(a.Type, v)
				}
			}
		}
		return false
	}
	return false
}

// "" if the object m has exactly the fields of struct type t (optional
// ones may be missing), else what differs.
func fieldsOK(t *idl.Type, m map[string]interface{}) string {
	declared := map[string]*idl.Type{}
	for _, f := range t.Fields {
		declared[f.Name] = f.Type
		v, present := m[f.Name]
		if !present && f.Type.Kind != idl.TypeMaybe {
			return fmt.Sprintf("'%s' is missing", f.Name)
		}
		if present && !typeOK(f.Type, v) {
			return fmt.Sprintf("'%s' has the wrong type (%v)", f.Name, v)
		}
	}
	for k := range m {
		if declared[k] == nil {
			return fmt.Sprintf("'%s' is not declared", k)
		}
	}
	return ""
}

// Call method with params, raw: the reply's parameters and error name.
func raw(ctx context.Context, c *varlink.Connection, method string, params interface{}) (map[string]interface{}, string) {
	var out json.RawMessage
	receive, err := c.Send(ctx, method, params, 0)
	if err != nil {
		return nil, "send: " + err.Error()
	}
	_, err = receive(ctx, &out)
	m := map[string]interface{}{}
	var ve *varlink.Error
	if errors.As(err, &ve) {
		if p, ok := ve.Parameters.(*json.RawMessage); ok && p != nil {
			json.Unmarshal(*p, &m)
		}
		return m, ve.Name
	}
	if err != nil {
		// org.varlink.service errors come back as their own types
		b, _ := json.Marshal(err)
		json.Unmarshal(b, &m)
		return m, fmt.Sprintf("%T", err)
	}
	json.Unmarshal(out, &m)
	return m, ""
}

// A call that must succeed: its reply has the fields its method declares.
func expectReply(ctx context.Context, c *varlink.Connection, method string, params interface{}) map[string]interface{} {
	m, name := raw(ctx, c, method, params)
	meth := findMethod(method)
	if !check(name == "" && meth != nil, "%s: a reply (error %q)", method, name) {
		return m
	}
	why := fieldsOK(meth.Out, m)
	check(why == "", "%s: the reply's fields are as declared %s", method, why)
	return m
}

// A call that must fail with io.traind error `want`, whose parameters are
// as declared; the typed error from the generated code is returned too.
func expectError(ctx context.Context, c *varlink.Connection, method string, params interface{}, want string) map[string]interface{} {
	m, name := raw(ctx, c, method, params)
	check(name == want, "%s %v: error %s (got %q %v)", method, params, want, name, m)
	e := findError(name)
	if check(e != nil, "%s is declared by its interface", name) {
		why := fieldsOK(e.Type, m)
		check(why == "", "%s: its parameters %v are as declared %s", name, m, why)
	}
	return m
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: conformance SOCKET")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c, err := varlink.NewConnection(ctx, "unix:"+os.Args[1])
	if err != nil {
		fmt.Println("FAIL: connect:", err)
		os.Exit(1)
	}
	defer c.Close()

	// org.varlink.service, through the library's own calls
	var vendor, product, version, url string
	var interfaces []string
	err = c.GetInfo(ctx, &vendor, &product, &version, &url, &interfaces)
	check(err == nil && vendor == "traind" && len(interfaces) == 2,
		"GetInfo (sent with \"parameters\": null): vendor %q, interfaces %v (%v)", vendor, interfaces, err)
	for _, name := range interfaces {
		desc, err := c.GetInterfaceDescription(ctx, name)
		if !check(err == nil, "GetInterfaceDescription(%s) (%v)", name, err) {
			continue
		}
		i, err := idl.New(desc)
		if check(err == nil && i.Name == name, "the IDL parser reads %s's description (%v)", name, err) {
			ifaces[name] = i
		}
	}
	if ifaces["io.traind"] == nil || ifaces["org.varlink.service"] == nil {
		fmt.Println("FAIL: no parsed interfaces; stopping")
		os.Exit(1)
	}
	t := ifaces["io.traind"]
	check(len(t.Methods) >= 12 && len(t.Errors) >= 10, "io.traind declares %d methods and %d errors",
		len(t.Methods), len(t.Errors))

	// the generated client: a small job from start to export
	jobs, err := iotraind.List().Call(ctx, c, nil)
	check(err == nil, "List (sent without parameters): %d jobs (%v)", len(jobs), err)
	name := "go-client"
	one, train, val, batch := int64(1), int64(2000), int64(1000), int64(50)
	cfg := iotraind.Config{Epochs: &one, Train_size: &train, Val_size: &val, Batch_size: &batch,
		Hidden: &[]int64{32}}
	id, err := iotraind.Start().Call(ctx, c, &name, &cfg, nil, nil, nil, nil, nil)
	check(err == nil && id > 0, "Start: job %d (%v)", id, err)
	timeout := 300.0
	job, err := iotraind.Wait().Call(ctx, c, id, nil, &[]string{"done", "failed"}, &timeout)
	check(err == nil && job.State == "done" && job.Epoch == 1, "Wait: job %d is %s at epoch %d (%v)",
		id, job.State, job.Epoch, err)
	check(err == nil && job.Dataset_digest != nil && len(*job.Dataset_digest) == 71,
		"Wait: the job records its dataset's digest (%v)", err)
	dss, err := iotraind.Datasets().Call(ctx, c)
	check(err == nil && len(dss) > 0 && len(dss[0].Jobs) >= 0, "Datasets: %d datasets (%v)", len(dss), err)
	job, err = iotraind.Status().Call(ctx, c, id)
	check(err == nil && job.Name == name && job.Config.Train_size != nil && *job.Config.Train_size == 2000,
		"Status: %s, train_size as given (%v)", job.Name, err)
	rows, err := iotraind.History().Call(ctx, c, id)
	check(err == nil && len(rows) == 1 && rows[0].Epoch == 1, "History: %d row(s) (%v)", len(rows), err)
	cks, err := iotraind.Checkpoints().Call(ctx, c, id)
	check(err == nil && len(cks) >= 1, "Checkpoints: %d (%v)", len(cks), err)
	lossp, accp, _, count, epoch, _, split, none, task, mae, _, ppl, err := iotraind.Eval().Call(ctx, c, id, nil, nil, nil, nil, nil)
	loss, acc := -1.0, -1.0
	if lossp != nil && accp != nil {
		loss, acc = *lossp, *accp
	}
	check(err == nil && acc > 0.5 && acc <= 1 && count == 1000 && epoch == 1 && split == "val" && none == nil &&
		task != nil && *task == "classification" && mae == nil && ppl == nil,
		"Eval: loss %.3f acc %.3f on %d %s images of epoch %d (%v)", loss, acc, count, split, epoch, err)
	perClass := true
	_, _, _, _, _, _, _, classes, _, _, _, _, err := iotraind.Eval().Call(ctx, c, id, nil, nil, nil, &perClass, nil)
	total := int64(0)
	if classes != nil {
		for _, k := range *classes {
			total += k.Count
		}
	}
	check(err == nil && classes != nil && len(*classes) == 10 && total == 1000,
		"Eval per_class: 10 ClassCounts rows covering the 1000 images (%v)", err)
	ep, _, size, sum, data, _, err := iotraind.Export().Call(ctx, c, id, nil, nil, nil)
	bytes, derr := base64.StdEncoding.DecodeString(data)
	h := sha256.Sum256(bytes)
	check(err == nil && derr == nil && ep == 1 && int64(len(bytes)) == size && hex.EncodeToString(h[:]) == sum,
		"Export: %d bytes whose sha256 is the one announced (%v %v)", size, err, derr)
	withCode := true
	_, _, _, _, _, code, err := iotraind.Export().Call(ctx, c, id, nil, nil, &withCode)
	check(err == nil && code != nil && strings.Contains(*code, "class Model(nn.Module)"),
		"Export(pytorch): the reply's pytorch holds the module's code (%v)", err)
	recv, err := iotraind.Watch().Send(ctx, c, varlink.More, id)
	if check(err == nil, "Watch sent with more (%v)", err) {
		var state string
		var flags uint64
		var committed *int64
		for n := 0; n < 100; n++ {
			_, state, _, _, _, _, _, _, _, committed, flags, err = recv(ctx)
			if err != nil || flags&varlink.Continues == 0 {
				break
			}
		}
		check(err == nil && state == "done" && flags&varlink.Continues == 0,
			"Watch of a done job: one last reply, state %s (%v)", state, err)
		check(committed != nil && *committed == ep,
			"Watch's committed_epoch is the job's committed epochs (%v)", committed)
	}

	// the same replies, raw, against the declared output
	expectReply(ctx, c, "org.varlink.service.GetInfo", nil)
	expectReply(ctx, c, "io.traind.List", nil)
	expectReply(ctx, c, "io.traind.Status", map[string]interface{}{"id": id})
	expectReply(ctx, c, "io.traind.History", map[string]interface{}{"id": id})
	expectReply(ctx, c, "io.traind.Checkpoints", map[string]interface{}{"id": id})
	expectReply(ctx, c, "io.traind.Steps", map[string]interface{}{"id": id})
	expectReply(ctx, c, "io.traind.Eval", map[string]interface{}{"id": id})
	expectReply(ctx, c, "io.traind.Export", map[string]interface{}{"id": id})
	expectReply(ctx, c, "io.traind.Export", map[string]interface{}{"id": id, "pytorch": true})
	expectReply(ctx, c, "io.traind.Counters", nil)
	expectReply(ctx, c, "io.traind.GetInfo", nil)

	// errors, typed by the generated code and by the library
	_, err = iotraind.Status().Call(ctx, c, 999999)
	var nsj *iotraind.NoSuchJob
	check(errors.As(err, &nsj) && nsj.Id == 999999, "Status of no job: NoSuchJob with its id (%v)", err)
	_, err = iotraind.Status().Call(ctx, c, 0)
	var ip *varlink.InvalidParameter
	check(errors.As(err, &ip) && ip.Parameter == "id",
		"Status(id 0): org.varlink.service.InvalidParameter naming id (%T %v)", err, err)
	bad := -1.0
	_, err = iotraind.Start().Call(ctx, c, nil, &iotraind.Config{Lr: &bad}, nil, nil, nil, nil, nil)
	check(errors.As(err, &ip) && ip.Parameter == "config.lr",
		"Start(lr -1): InvalidParameter naming config.lr (%T %v)", err, err)
	nosuch := "nosuch"
	_, err = iotraind.Start().Call(ctx, c, nil, &iotraind.Config{Dataset: &nosuch}, nil, nil, nil, nil, nil)
	var dse *iotraind.DatasetError
	check(errors.As(err, &dse) && dse.Dataset == "nosuch", "Start(dataset nosuch): DatasetError (%v)", err)
	best := true
	bep, _, _, _, _, _, err := iotraind.Export().Call(ctx, c, id, nil, &best, nil)
	check(err == nil && bep == 1, "Export(best): the best epoch checkpoint, epoch %d (%v)", bep, err)
	e99 := int64(99)
	_, _, _, _, _, _, err = iotraind.Export().Call(ctx, c, id, &e99, nil, nil)
	var nsc *iotraind.NoSuchCheckpoint
	check(errors.As(err, &nsc) && nsc.Id == id && nsc.Epoch != nil && *nsc.Epoch == 99,
		"Export(epoch 99): NoSuchCheckpoint with id and epoch (%v)", err)
	_, _, err = iotraind.Resume().Call(ctx, c, id, nil, nil, nil, nil)
	var ist *iotraind.InvalidState
	check(errors.As(err, &ist) && ist.Id == id && ist.State == "done" && ist.Message != "",
		"Resume of a done job: InvalidState with id, state and message (%v)", err)
	short := 1.0
	_, err = iotraind.Wait().Call(ctx, c, id, nil, &[]string{"paused"}, &short)
	var ust *iotraind.UnexpectedState
	check(errors.As(err, &ust) && ust.Id == id && ust.State == "done",
		"Wait for paused on a done job: UnexpectedState (%v)", err)
	err = c.Call(ctx, "io.traind.Nope", nil, nil)
	var mnf *varlink.MethodNotFound
	check(errors.As(err, &mnf) && mnf.Method == "io.traind.Nope", "an unknown method: MethodNotFound (%v)", err)
	_, err = c.GetInterfaceDescription(ctx, "com.example.nope")
	var inf *varlink.InterfaceNotFound
	check(errors.As(err, &inf) && inf.Interface == "com.example.nope",
		"an unknown interface's description: InterfaceNotFound (%v)", err)
	err = c.Call(ctx, "com.example.nope.Call", nil, nil)
	check(errors.As(err, &inf) && inf.Interface == "com.example.nope",
		"a method of an unknown interface: InterfaceNotFound naming the interface (%v)", err)

	// the io.traind errors, raw, against their declarations
	expectError(ctx, c, "io.traind.Status", map[string]interface{}{"id": 999999}, "io.traind.NoSuchJob")
	expectError(ctx, c, "io.traind.Export", map[string]interface{}{"id": id, "epoch": 99}, "io.traind.NoSuchCheckpoint")
	expectError(ctx, c, "io.traind.Export", map[string]interface{}{"id": 999999}, "io.traind.NoSuchJob")
	expectError(ctx, c, "io.traind.Resume", map[string]interface{}{"id": id}, "io.traind.InvalidState")
	expectError(ctx, c, "io.traind.Pause", map[string]interface{}{"id": id}, "io.traind.InvalidState")
	expectError(ctx, c, "io.traind.Kill", map[string]interface{}{"id": id}, "io.traind.InvalidState")
	expectError(ctx, c, "io.traind.Wait", map[string]interface{}{"id": id, "states": []string{"paused"}},
		"io.traind.UnexpectedState")
	expectError(ctx, c, "io.traind.Start", map[string]interface{}{"config": map[string]interface{}{"dataset": "nosuch"}},
		"io.traind.DatasetError")
	// and org.varlink.service.InvalidParameter, raw: parameter, plus traind's message
	m, name2 := raw(ctx, c, "io.traind.Status", map[string]interface{}{"id": "one"})
	check(name2 == "*varlink.InvalidParameter" && m["parameter"] == "id",
		"Status(id \"one\"): the library reads InvalidParameter naming id (%s %v)", name2, m)
	if failed > 0 {
		fmt.Printf("%d check(s) failed\n", failed)
		os.Exit(1)
	}
	fmt.Println("all checks passed")
}
