// Package dynamo is stipend's storage: one DynamoDB table holding provider
// settings, proxy keys, their usage counters and one event per request.
//
// It is the only package that imports the DynamoDB SDK. A request on a key
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
//	                              indexed by user, custom id and month (events.go)
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
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	smithyendpoints "github.com/aws/smithy-go/endpoints"

	"github.com/stipend/stipend/shared/apikey"
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
	db        api   // wire, or the SDK client
	wire      *wire // the same, for options
	table     string
	retention time.Duration

	statsMu sync.Mutex
	stats   Stats
}

// NewClient returns a DynamoDB client for cfg, configured for less work per
// call (every proxied request makes several):
//   - response checksum validation is off: DynamoDB Local sends no CRC32 on
//     errors, and TLS already protects data in transit on AWS;
//   - account-based endpoints are off (stipend's credentials carry no
//     account id, so the SDK's rules would pick the regional endpoint
//     anyway), and the endpoint, which then depends only on the client's
//     region, endpoint override, FIPS and dual-stack settings, is resolved
//     by the SDK's rules once and reused (resolvedOnce).
func NewClient(cfg aws.Config, optFns ...func(*dynamodb.Options)) *dynamodb.Client {
	return dynamodb.NewFromConfig(cfg, append([]func(*dynamodb.Options){func(o *dynamodb.Options) {
		o.DisableValidateResponseChecksum = true
		o.AccountIDEndpointMode = aws.AccountIDEndpointModeDisabled
		o.EndpointResolverV2 = &resolvedOnce{next: dynamodb.NewDefaultEndpointResolverV2()}
	}}, optFns...)...)
}

// resolvedOnce remembers the endpoint its resolver returned for the
// parameters that matter without account-based endpoints, and returns it
// again while they stay the same (for one client, always).
type resolvedOnce struct {
	next dynamodb.EndpointResolverV2

	mu       sync.Mutex
	key      string
	endpoint smithyendpoints.Endpoint
	ok       bool
}

func (r *resolvedOnce) ResolveEndpoint(ctx context.Context, p dynamodb.EndpointParameters) (smithyendpoints.Endpoint, error) {
	if aws.ToString(p.AccountIdEndpointMode) != string(aws.AccountIDEndpointModeDisabled) {
		return r.next.ResolveEndpoint(ctx, p)
	}
	key := aws.ToString(p.Region) + "\x00" + aws.ToString(p.Endpoint) + "\x00" +
		strconv.FormatBool(aws.ToBool(p.UseFIPS)) + strconv.FormatBool(aws.ToBool(p.UseDualStack))
	r.mu.Lock()
	if r.ok && r.key == key {
		e := r.endpoint
		r.mu.Unlock()
		return e, nil
	}
	r.mu.Unlock()
	e, err := r.next.ResolveEndpoint(ctx, p)
	if err != nil {
		return e, err
	}
	r.mu.Lock()
	r.key, r.endpoint, r.ok = key, e, true
	r.mu.Unlock()
	return e, nil
}

// NewClientAt returns a client for the DynamoDB endpoint url, such as
// DynamoDB Local in tests and `make dev`.
func NewClientAt(cfg aws.Config, url string) *dynamodb.Client {
	return NewClient(cfg, func(o *dynamodb.Options) { o.BaseEndpoint = aws.String(url) })
}

// New returns a Store on table that calls DynamoDB through db's
// configuration: the request path's operations by wire (wire.go), the
// others by db. Events expire after retention (0 means 30 days).
func New(db *dynamodb.Client, table string, retention time.Duration, opts ...Option) *Store {
	if retention <= 0 {
		retention = 30 * 24 * time.Hour
	}
	w := newWire(db)
	s := &Store{db: w, wire: w, table: table, retention: retention}
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
	_, err := s.db.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(s.table),
		BillingMode:          types.BillingModePayPerRequest,
		AttributeDefinitions: attributeDefinitions(),
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String(attrPK), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String(attrSK), KeyType: types.KeyTypeRange},
		},
		GlobalSecondaryIndexes: globalIndexes(), // events.go
	})
	var inUse *types.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) {
		return fmt.Errorf("create table %s: %w", s.table, err)
	}
	w := dynamodb.NewTableExistsWaiter(s.db)
	if err := w.Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(s.table)}, 30*time.Second); err != nil {
		return fmt.Errorf("wait for table %s: %w", s.table, err)
	}
	if inUse != nil {
		if err := s.ensureIndexes(ctx); err != nil {
			return err
		}
	}
	if o.noTTL {
		return nil
	}
	_, err = s.db.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{
		TableName:               aws.String(s.table),
		TimeToLiveSpecification: &types.TimeToLiveSpecification{AttributeName: aws.String(attrExpires), Enabled: aws.Bool(true)},
	})
	if err != nil && !isTTLAlreadyOn(err) {
		return fmt.Errorf("enable ttl on %s: %w", s.table, err)
	}
	return nil
}

func isTTLAlreadyOn(err error) bool {
	var ve interface{ ErrorMessage() string }
	return errors.As(err, &ve) && strings.Contains(strings.ToLower(ve.ErrorMessage()), "already enabled")
}

func str(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }
func num(v int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(v, 10)}
}

func key(pk, sk string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{attrPK: str(pk), attrSK: str(sk)}
}

func getS(item map[string]types.AttributeValue, name string) string {
	if v, ok := item[name].(*types.AttributeValueMemberS); ok {
		return v.Value
	}
	return ""
}

func getN(item map[string]types.AttributeValue, name string) int64 {
	if v, ok := item[name].(*types.AttributeValueMemberN); ok {
		n, _ := strconv.ParseInt(v.Value, 10, 64)
		return n
	}
	return 0
}

func isConditionFailed(err error) bool {
	var ccf *types.ConditionalCheckFailedException
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

func providerItem(p *provider.Setting) (map[string]types.AttributeValue, error) {
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

func decodeProvider(item map[string]types.AttributeValue) (*provider.Setting, error) {
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
	return decodeProvider(item)
}

// ListProviders returns every provider setting, oldest first.
func (s *Store) ListProviders(ctx context.Context) ([]*provider.Setting, error) {
	var list []*provider.Setting
	err := s.queryGSI(ctx, gsiProviders, func(item map[string]types.AttributeValue) error {
		p, err := decodeProvider(item)
		if err == nil {
			list = append(list, p)
		}
		return err
	})
	return list, err
}

func (s *Store) queryGSI(ctx context.Context, pk string, each func(map[string]types.AttributeValue) error) error {
	p := dynamodb.NewQueryPaginator(s.db, &dynamodb.QueryInput{
		TableName:                 aws.String(s.table),
		IndexName:                 aws.String(indexGSI1),
		KeyConditionExpression:    aws.String("gsi1pk = :pk"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": str(pk)},
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

func keyItem(k *apikey.Key) (map[string]types.AttributeValue, error) {
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

func decodeKey(item map[string]types.AttributeValue) (*apikey.Key, error) {
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
func (s *Store) writeKey(ctx context.Context, k *apikey.Key, item map[string]types.AttributeValue, cond string, version int64) error {
	put := &types.Put{
		TableName: aws.String(s.table), Item: item, ConditionExpression: aws.String(cond),
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	}
	if cond == ifVersion {
		put.ExpressionAttributeValues = map[string]types.AttributeValue{":v": num(version)}
	}
	err := s.transact(ctx, []types.TransactWriteItem{{Put: put}, s.ledgerVersion(k.ID, k.Version)}, "put key "+k.ID)
	var tc *types.TransactionCanceledException
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
	err := s.queryGSI(ctx, gsiKeys, func(item map[string]types.AttributeValue) error {
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
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: aws.String(s.table), Key: key(keyPK(id), skUsage), ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return ledger.Totals{}, fmt.Errorf("get usage of key %s: %w", id, err)
	}
	return totalsOf(out.Item), nil
}
