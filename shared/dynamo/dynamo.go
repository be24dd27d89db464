// Package dynamo is stipend's storage: one DynamoDB table holding provider
// settings, proxy keys, their usage counters and one event per request.
//
// It talks to DynamoDB through package ddb, the part of DynamoDB's API
// stipend uses, sent without the SDK's service client. A request on a key
// with its own limits only is reserved with one conditional UpdateItem on
// the key's ledger and settled with one more, after its event (with its
// aggregates and deferred counts) is stored exactly once (keyledger.go).
//
// Item types (pk / sk):
//
//	PROVIDER#<id> / PROVIDER      provider setting          (gsi1: PROVIDERS / <createdAt>#<id>)
//	KEY#<id>      / KEY           proxy key configuration   (gsi1: KEYS / <createdAt>#<id>)
//	KEY#<id>      / USAGE         the key's ledger: its counters, configuration version and
//	                              open reservations (gsi3 LEDGERS while some are open)
//	EV#<keyId>    / <ms>#<id>     one event per request, expiring via expiresAt (TTL);
//	                              indexed by user and custom id (events.go)
//	AGG#<keyId>   / DAY#<d>#<m>   the key's sums per UTC day and model (reports.go)
//	AGG#<keyId>   / CID#<id>      the key's sums per custom id (reports.go)
package dynamo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/stipend/stipend/shared/apikey"
	"github.com/stipend/stipend/shared/dynamo/ddb"
	"github.com/stipend/stipend/shared/ledger"
	"github.com/stipend/stipend/shared/provider"
	"github.com/stipend/stipend/shared/storeerr"
)

// Errors callers can test for with errors.Is: package storeerr's, so
// consumers test for them without importing this package.
var (
	ErrNotFound = storeerr.ErrNotFound
	ErrExists   = storeerr.ErrExists
	ErrConflict = storeerr.ErrConflict
)

// Attribute and key names of the table.
const (
	attrPK      = "pk"
	attrSK      = "sk"
	attrGSI1PK  = "gsi1pk"
	attrGSI1SK  = "gsi1sk"
	attrExpires = "expiresAt"
	indexGSI1   = "gsi1"
)

// Store reads and writes stipend's table. It is safe for concurrent use.
type Store struct {
	db        *ddb.Client
	table     string
	retention time.Duration

	statsMu sync.Mutex
	stats   Stats

	// share overrides allowanceShare (allowance.go) when set: for tests.
	share int64
	// steady is nil unless WithSteadyReads (readings.go).
	steady *steadyParts

	// decoded keeps provider settings decoded, by id, with the stored
	// JSON they came from: GetProvider reads the item every time (a change
	// applies to the next request) but decodes it only when that JSON
	// changed. At most maxDecodedProviders entries.
	decodedMu sync.Mutex
	decoded   map[string]decodedProvider
}

// decodedProvider is a provider setting and the stored JSON it was decoded
// from.
type decodedProvider struct {
	data    string
	setting *provider.Setting // never handed out: callers get clones
}

// maxDecodedProviders bounds Store.decoded; past it, it starts empty again.
// An account has a handful of settings.
const maxDecodedProviders = 256

// Option changes how New builds a Store.
type Option func(*Store)

// WithMiddleware wraps every call of the Store in m, the first given
// outermost.
func WithMiddleware(m ...ddb.Middleware) Option {
	return func(s *Store) { s.db = s.db.With(m...) }
}

// New returns a Store on table that calls DynamoDB with db. Events expire
// after retention (0 means 30 days).
func New(db *ddb.Client, table string, retention time.Duration, opts ...Option) *Store {
	if retention <= 0 {
		retention = 30 * 24 * time.Hour
	}
	s := &Store{db: db, table: table, retention: retention}
	for _, o := range opts {
		o(s)
	}
	return s
}

// TableOption changes how CreateTable creates the table.
type TableOption func(*tableOptions)

type tableOptions struct{ noTTL bool }

// WithoutTTL leaves DynamoDB's TTL off, for test tables: their fixtures are
// dated by the tests' own clocks, which the real calendar must not overtake
// and delete behind the test's back. Expiry attributes are still written.
func WithoutTTL() TableOption { return func(o *tableOptions) { o.noTTL = true } }

// CreateTable creates the table as template.yaml declares it, with TTL on
// (unless WithoutTTL), and waits until it is active. It is a no-op when the
// table exists. It is meant for local stacks and tests; on AWS the template
// creates the table.
func (s *Store) CreateTable(ctx context.Context, opts ...TableOption) error {
	var o tableOptions
	for _, opt := range opts {
		opt(&o)
	}
	_, err := s.db.CreateTable(ctx, &ddb.CreateTableInput{
		TableName:            aws.String(s.table),
		BillingMode:          ddb.BillingModePayPerRequest,
		AttributeDefinitions: attributeDefinitions(),
		KeySchema: []ddb.KeySchemaElement{
			{AttributeName: aws.String(attrPK), KeyType: ddb.KeyTypeHash},
			{AttributeName: aws.String(attrSK), KeyType: ddb.KeyTypeRange},
		},
		GlobalSecondaryIndexes: globalIndexes(), // events.go
	})
	var inUse *ddb.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) {
		return fmt.Errorf("create table %s: %w", s.table, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = s.waitTable(wctx, func(t *ddb.TableDescription) bool { return t.TableStatus == ddb.TableStatusActive })
	cancel()
	if err != nil {
		return fmt.Errorf("wait for table %s to be active: %w", s.table, err)
	}
	if inUse != nil {
		if err := s.ensureIndexes(ctx); err != nil {
			return err
		}
	}
	if o.noTTL {
		return nil
	}
	_, err = s.db.UpdateTimeToLive(ctx, &ddb.UpdateTimeToLiveInput{
		TableName:               aws.String(s.table),
		TimeToLiveSpecification: &ddb.TimeToLiveSpecification{AttributeName: aws.String(attrExpires), Enabled: aws.Bool(true)},
	})
	if err != nil && !isTTLAlreadyOn(err) {
		return fmt.Errorf("enable ttl on %s: %w", s.table, err)
	}
	return nil
}

// waitTable describes the table until ready says it is (a table not found
// yet is not ready; other errors end the wait), as the SDK's TableExists
// waiter did: pauses of 20 ms, doubling up to a second.
func (s *Store) waitTable(ctx context.Context, ready func(*ddb.TableDescription) bool) error {
	pause := 20 * time.Millisecond
	for {
		out, err := s.db.DescribeTable(ctx, &ddb.DescribeTableInput{TableName: aws.String(s.table)})
		var missing *ddb.ResourceNotFoundException
		switch {
		case err == nil && out.Table != nil && ready(out.Table):
			return nil
		case err != nil && !errors.As(err, &missing):
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
		}
		pause = min(2*pause, time.Second)
	}
}

func isTTLAlreadyOn(err error) bool {
	var ve interface{ ErrorMessage() string }
	return errors.As(err, &ve) && strings.Contains(strings.ToLower(ve.ErrorMessage()), "already enabled")
}

func str(v string) ddb.AttributeValue { return &ddb.AttributeValueMemberS{Value: v} }
func num(v int64) ddb.AttributeValue {
	return &ddb.AttributeValueMemberN{Value: strconv.FormatInt(v, 10)}
}

func key(pk, sk string) map[string]ddb.AttributeValue {
	return map[string]ddb.AttributeValue{attrPK: str(pk), attrSK: str(sk)}
}

func getS(item map[string]ddb.AttributeValue, name string) string {
	if v, ok := item[name].(*ddb.AttributeValueMemberS); ok {
		return v.Value
	}
	return ""
}

func getN(item map[string]ddb.AttributeValue, name string) int64 {
	if v, ok := item[name].(*ddb.AttributeValueMemberN); ok {
		n, _ := strconv.ParseInt(v.Value, 10, 64)
		return n
	}
	return 0
}

func isConditionFailed(err error) bool {
	var ccf *ddb.ConditionalCheckFailedException
	return errors.As(err, &ccf)
}

func sortKey(createdAt int64, id string) string { return fmt.Sprintf("%012d#%s", createdAt, id) }

// ---- providers ----

const (
	skProvider   = "PROVIDER"
	gsiProviders = "PROVIDERS"
)

func providerPK(id string) string { return "PROVIDER#" + id }

// CreateProvider stores a new provider setting; ErrExists if its id is taken.
func (s *Store) CreateProvider(ctx context.Context, p *provider.Setting) error {
	item, err := providerItem(p)
	if err != nil {
		return err
	}
	return s.putItem(ctx, item, ifAbsent, 0, "provider "+p.ID)
}

// UpdateProvider replaces an existing provider setting; ErrNotFound if absent.
func (s *Store) UpdateProvider(ctx context.Context, p *provider.Setting) error {
	item, err := providerItem(p)
	if err != nil {
		return err
	}
	return s.putItem(ctx, item, ifPresent, 0, "provider "+p.ID)
}

type providerData struct {
	provider.Setting
	SecretID   string `json:"secretId"`
	KeyVersion int64  `json:"keyVersion,omitempty"`
}

func providerItem(p *provider.Setting) (map[string]ddb.AttributeValue, error) {
	b, err := json.Marshal(providerData{Setting: *p, SecretID: p.SecretID, KeyVersion: p.KeyVersion})
	if err != nil {
		return nil, fmt.Errorf("encode provider %s: %w", p.ID, err)
	}
	item := key(providerPK(p.ID), skProvider)
	item[attrGSI1PK] = str(gsiProviders)
	item[attrGSI1SK] = str(sortKey(p.CreatedAt, p.ID))
	item["data"] = str(string(b))
	return item, nil
}

func decodeProvider(item map[string]ddb.AttributeValue) (*provider.Setting, error) {
	var d providerData
	if err := json.Unmarshal([]byte(getS(item, "data")), &d); err != nil {
		return nil, fmt.Errorf("decode provider %s: %w", getS(item, attrPK), err)
	}
	p := d.Setting
	p.SecretID, p.KeyVersion = d.SecretID, d.KeyVersion
	return &p, nil
}

// GetProvider returns the provider setting id; ErrNotFound if absent.
func (s *Store) GetProvider(ctx context.Context, id string) (*provider.Setting, error) {
	item, err := s.getItem(ctx, providerPK(id), skProvider, "provider "+id)
	if err != nil {
		return nil, err
	}
	return s.decodeProviderOnce(item)
}

// decodeProviderOnce is decodeProvider, skipped when item's JSON is the one
// decoded last for the same id.
func (s *Store) decodeProviderOnce(item map[string]ddb.AttributeValue) (*provider.Setting, error) {
	id, data := getS(item, attrPK), getS(item, "data")
	s.decodedMu.Lock()
	d, ok := s.decoded[id]
	s.decodedMu.Unlock()
	if ok && d.data == data {
		return d.setting.Clone(), nil
	}
	p, err := decodeProvider(item)
	if err != nil {
		return nil, err
	}
	s.decodedMu.Lock()
	if s.decoded == nil || len(s.decoded) >= maxDecodedProviders {
		s.decoded = map[string]decodedProvider{}
	}
	s.decoded[id] = decodedProvider{data: data, setting: p.Clone()}
	s.decodedMu.Unlock()
	return p, nil
}

// ListProviders returns every provider setting, oldest first.
func (s *Store) ListProviders(ctx context.Context) ([]*provider.Setting, error) {
	var list []*provider.Setting
	err := s.queryGSI(ctx, gsiProviders, func(item map[string]ddb.AttributeValue) error {
		p, err := decodeProvider(item)
		if err == nil {
			list = append(list, p)
		}
		return err
	})
	return list, err
}

func (s *Store) queryGSI(ctx context.Context, pk string, each func(map[string]ddb.AttributeValue) error) error {
	p := ddb.NewQueryPaginator(s.db, &ddb.QueryInput{
		TableName:                 aws.String(s.table),
		IndexName:                 aws.String(indexGSI1),
		KeyConditionExpression:    aws.String("gsi1pk = :pk"),
		ExpressionAttributeValues: map[string]ddb.AttributeValue{":pk": str(pk)},
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("query %s: %w", pk, err)
		}
		for _, item := range page.Items {
			if err := each(item); err != nil {
				return err
			}
		}
	}
	return nil
}

// ---- keys ----

const (
	skKey   = "KEY"
	skUsage = "USAGE"
	gsiKeys = "KEYS"
)

func keyPK(id string) string { return "KEY#" + id }

type keyData struct {
	apikey.Key
	Hash string `json:"hash"`
}

func keyItem(k *apikey.Key) (map[string]ddb.AttributeValue, error) {
	b, err := json.Marshal(keyData{Key: *k, Hash: k.Hash})
	if err != nil {
		return nil, fmt.Errorf("encode key %s: %w", k.ID, err)
	}
	item := key(keyPK(k.ID), skKey)
	item[attrGSI1PK] = str(gsiKeys)
	item[attrGSI1SK] = str(sortKey(k.CreatedAt, k.ID))
	item["version"] = num(k.Version)
	item["data"] = str(string(b))
	return item, nil
}

func decodeKey(item map[string]ddb.AttributeValue) (*apikey.Key, error) {
	var d keyData
	if err := json.Unmarshal([]byte(getS(item, "data")), &d); err != nil {
		return nil, fmt.Errorf("decode key %s: %w", getS(item, attrPK), err)
	}
	k := d.Key
	k.Hash = d.Hash
	k.Version = getN(item, "version")
	return &k, nil
}

// CreateKey stores a new key with version 1; ErrExists if its id is taken.
// The key's ledger gets the version in the same transaction (keyledger.go).
func (s *Store) CreateKey(ctx context.Context, k *apikey.Key) error {
	k.Version = 1
	item, err := keyItem(k)
	if err != nil {
		return err
	}
	return s.writeKey(ctx, k, item, ifAbsent, 0)
}

// UpdateKey writes k if the stored version is still k.Version, and bumps the
// version (on the key's ledger too, in the same transaction, so the next
// reservation sees the change); ErrConflict if someone else changed it
// first, ErrNotFound if absent.
func (s *Store) UpdateKey(ctx context.Context, k *apikey.Key) error {
	next := *k
	next.Version++
	item, err := keyItem(&next)
	if err != nil {
		return err
	}
	if err := s.writeKey(ctx, &next, item, ifVersion, k.Version); err != nil {
		return err
	}
	k.Version = next.Version
	return nil
}

// writeKey puts a key's item under cond, as putItem does, and its version
// on its ledger, in one transaction.
func (s *Store) writeKey(ctx context.Context, k *apikey.Key, item map[string]ddb.AttributeValue, cond string, version int64) error {
	put := &ddb.Put{
		TableName: aws.String(s.table), Item: item, ConditionExpression: aws.String(cond),
		ReturnValuesOnConditionCheckFailure: ddb.ReturnValuesOnConditionCheckFailureAllOld,
	}
	if cond == ifVersion {
		put.ExpressionAttributeValues = map[string]ddb.AttributeValue{":v": num(version)}
	}
	err := s.transact(ctx, []ddb.TransactWriteItem{{Put: put}, s.ledgerVersion(k.ID, k.Version)}, "put key "+k.ID)
	var tc *ddb.TransactionCanceledException
	if !errors.As(err, &tc) || len(tc.CancellationReasons) == 0 || aws.ToString(tc.CancellationReasons[0].Code) != "ConditionalCheckFailed" {
		return err
	}
	switch {
	case cond == ifAbsent:
		return fmt.Errorf("key %s: %w", k.ID, ErrExists)
	case len(tc.CancellationReasons[0].Item) == 0:
		return fmt.Errorf("key %s: %w", k.ID, ErrNotFound)
	}
	return fmt.Errorf("key %s: %w", k.ID, ErrConflict)
}

// GetKey returns the key id with a strongly consistent read; ErrNotFound if absent.
func (s *Store) GetKey(ctx context.Context, id string) (*apikey.Key, error) {
	item, err := s.getItem(ctx, keyPK(id), skKey, "key "+id)
	if err != nil {
		return nil, err
	}
	return decodeKey(item)
}

// ListKeys returns every key, oldest first.
func (s *Store) ListKeys(ctx context.Context) ([]*apikey.Key, error) {
	var list []*apikey.Key
	err := s.queryGSI(ctx, gsiKeys, func(item map[string]ddb.AttributeValue) error {
		k, err := decodeKey(item)
		if err == nil {
			list = append(list, k)
		}
		return err
	})
	return list, err
}

// KeyTotals returns the lifetime counters of key id (zero when it has none yet).
func (s *Store) KeyTotals(ctx context.Context, id string) (ledger.Totals, error) {
	out, err := s.db.GetItem(ctx, &ddb.GetItemInput{
		TableName: aws.String(s.table), Key: key(keyPK(id), skUsage), ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return ledger.Totals{}, fmt.Errorf("get usage of key %s: %w", id, err)
	}
	return totalsOf(out.Item), nil
}
